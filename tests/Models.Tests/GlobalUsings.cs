global using OnnxLora.Testing;
