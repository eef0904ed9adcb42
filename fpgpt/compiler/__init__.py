"""fpgpt.compiler"""
