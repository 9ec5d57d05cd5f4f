"""Small helpers with no knowledge of models or data: files, devices, the environment."""
