using Microsoft.ML.OnnxRuntime;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// Creates the process-wide ONNX Runtime environment with a logging callback, so that the detailed reason a provider
/// failed (ORT logs "Failed to load library … libcublasLt.so.13: cannot open shared object file" while the exception
/// only says "Failed to load shared library") can be put in the report. Warnings and errors are still written to
/// stderr, as ORT's default logger does.
/// </summary>
internal static class OrtLog
{
    private const int Keep = 64;
    private static readonly Lock Sync = new();
    private static readonly Queue<(long Seq, string Message)> Recent = new();
    private static DOrtLoggingFunction? _callback;
    private static bool _installed;
    private static bool _capturing;
    private static long _seq;

    /// <summary>Creates the environment if nobody has; afterwards <see cref="ErrorsSince"/> sees ORT's errors.</summary>
    public static void EnsureEnvironment()
    {
        lock (Sync)
        {
            if (_installed)
            {
                return;
            }
            _installed = true;
            if (OrtEnv.IsCreated)
            {
                return;
            }
            _callback = OnLog;
            var options = new EnvironmentCreationOptions
            {
                logId = "OnnxLora.Validate",
                logLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_WARNING,
                loggingFunction = _callback,
            };
            OrtEnv.CreateInstanceWithOptions(ref options);
            _capturing = true;
        }
    }

    /// <summary>A position in the log; pass it to <see cref="ErrorsSince"/>.</summary>
    public static long Mark()
    {
        lock (Sync)
        {
            return _seq;
        }
    }

    /// <summary>Error messages ORT logged after <paramref name="mark"/> (empty when the environment was created elsewhere).</summary>
    public static IReadOnlyList<string> ErrorsSince(long mark)
    {
        lock (Sync)
        {
            return [.. Recent.Where(e => e.Seq > mark).Select(e => e.Message)];
        }
    }

    public static bool Capturing
    {
        get
        {
            lock (Sync)
            {
                return _capturing;
            }
        }
    }

    private static void OnLog(IntPtr param, OrtLoggingLevel severity, string category, string logId, string codeLocation, string message)
    {
        if (severity < OrtLoggingLevel.ORT_LOGGING_LEVEL_WARNING)
        {
            return;
        }
        string text = message.Trim();
        Console.Error.WriteLine($"onnxruntime {(severity >= OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR ? "error" : "warning")}: {text}");
        if (severity < OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR)
        {
            return;
        }
        lock (Sync)
        {
            Recent.Enqueue((++_seq, text));
            while (Recent.Count > Keep)
            {
                Recent.Dequeue();
            }
        }
    }
}
