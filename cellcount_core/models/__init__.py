"""Model files and networks: the architectures, the safetensors + JSON card format, the bundled models."""
