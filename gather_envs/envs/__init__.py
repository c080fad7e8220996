"""The Gymnasium environments: the env, its action parser, spaces, prompts and registration."""
