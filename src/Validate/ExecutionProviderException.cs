namespace OnnxLora.Validate;

/// <summary>
/// The requested execution provider could not be used and falling back to CPU was not allowed. The message carries
/// ONNX Runtime's own explanation (for example the CUDA library that failed to load).
/// </summary>
public sealed class ExecutionProviderException : InvalidOperationException
{
    public ExecutionProviderException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }

    public ExecutionProviderException()
    {
    }

    public ExecutionProviderException(string message)
        : base(message)
    {
    }
}
