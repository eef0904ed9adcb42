"""fpgpt.hw"""
