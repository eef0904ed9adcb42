"""fpgpt.energy"""
