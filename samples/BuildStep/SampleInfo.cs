namespace OnnxLora.Samples.BuildStep;

/// <summary>Where the build step puts the merged model, relative to this project's output folder.</summary>
public static class SampleInfo
{
    public const string MergedModel = "models/sample-lora.onnx";
}
