"""fpgpt.models"""
