"""Helpers the tests share: real servers (llama.cpp, a loopback OpenAI server) and fixture data."""
