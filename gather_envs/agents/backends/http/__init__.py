"""The OpenAI-compatible HTTP backend's parts, one role per module.

``transport`` moves bytes (keep-alive HTTP/1.1 over sockets and TLS), ``watchdog`` cuts an attempt
at its total deadline, ``pool`` routes episodes among endpoints, ``retry`` decides what is tried
again and when, ``protocol`` builds and parses OpenAI chat-completions JSON. The backend that joins
them is :class:`~gather_envs.agents.backends.openai_http.OpenAIHTTPBackend`.
"""
