"""fpgpt.sim"""
