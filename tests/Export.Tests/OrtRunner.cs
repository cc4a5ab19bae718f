using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace OnnxLora.Export.Tests;

/// <summary>Runs an ONNX model with ONNX Runtime's CPU provider.</summary>
internal sealed class OrtRunner : IDisposable
{
    private readonly InferenceSession _session;

    private OrtRunner(InferenceSession session) => _session = session;

    public static OrtRunner FromBytes(byte[] model)
    {
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        return new OrtRunner(new InferenceSession(model, options));
    }

    /// <summary>
    /// A session on the CUDA execution provider (device 0), or Inconclusive with ONNX Runtime's reason where CUDA
    /// cannot be used (category GPU tests).
    /// </summary>
    public static OrtRunner FromBytesOnCuda(byte[] model)
    {
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        try
        {
            options.AppendExecutionProvider_CUDA(0);
        }
        catch (OnnxRuntimeException e)
        {
            Assert.Inconclusive($"GPU category: no usable CUDA provider here ({e.Message.Split('\n')[0]}); "
                + "run on a machine with an NVIDIA GPU, CUDA 13 and cuDNN 9: dotnet test --filter TestCategory=GPU");
        }
        return new OrtRunner(new InferenceSession(model, options));
    }

    public static OrtRunner FromFile(string path)
    {
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        return new OrtRunner(new InferenceSession(path, options));
    }

    public IReadOnlyList<string> InputNames => _session.InputMetadata.Keys.ToList();

    /// <summary>Runs with int64 and fp32 inputs (name → data, shape); returns the named fp32 output and its shape.</summary>
    public (float[] Data, long[] Shape) Run(string output, params (string Name, Array Data, long[] Shape)[] inputs)
    {
        var values = new List<OrtValue>();
        try
        {
            var feeds = new Dictionary<string, OrtValue>();
            foreach (var (name, data, shape) in inputs)
            {
                var value = data switch
                {
                    long[] l => OrtValue.CreateTensorValueFromMemory(l, shape),
                    float[] f => OrtValue.CreateTensorValueFromMemory(f, shape),
                    bool[] b => OrtValue.CreateTensorValueFromMemory(b, shape),
                    _ => throw new ArgumentException($"input {name}: unsupported array type {data.GetType()}"),
                };
                values.Add(value);
                feeds.Add(name, value);
            }
            using var runOptions = new RunOptions();
            using var results = _session.Run(runOptions, feeds, [output]);
            var result = results[0];
            var info = result.GetTensorTypeAndShape();
            float[] data2 = info.ElementDataType == TensorElementType.Float16
                ? result.GetTensorDataAsSpan<Float16>().ToArray().Select(h => (float)h.ToFloat()).ToArray()
                : result.GetTensorDataAsSpan<float>().ToArray();
            return (data2, info.Shape);
        }
        finally
        {
            foreach (var v in values)
            {
                v.Dispose();
            }
        }
    }

    public void Dispose() => _session.Dispose();
}
