using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using OnnxLora.Core;

namespace OnnxLora.Validate.Internals;

/// <summary>
/// The inputs of a run and their OrtValues: each array is pinned once and wrapped once, and the same OrtValue is fed
/// to every model (for comparison runs and bound for timed runs). Owns and releases the OrtValues and pins.
/// </summary>
internal sealed class InputSet : IDisposable
{
    private readonly Dictionary<string, OrtValue> _values = new(StringComparer.Ordinal);
    private readonly List<GCHandle> _pins = [];

    public InputSet(IReadOnlyList<InputTensor> tensors)
    {
        Tensors = tensors;
        try
        {
            foreach (var t in tensors)
            {
                var pin = GCHandle.Alloc(t.Data, GCHandleType.Pinned);
                _pins.Add(pin);
                long bytes = t.ElementCount * t.ElementType.SizeOf();
                _values[t.Name] = OrtValue.CreateTensorValueWithData(
                    OrtMemoryInfo.DefaultInstance, OrtTypes.ToOrt(t.ElementType, $"input {t.Name}"), t.ShapeArray, pin.AddrOfPinnedObject(), bytes);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public IReadOnlyList<InputTensor> Tensors { get; }

    public OrtValue this[string name] => _values[name];

    public bool Contains(string name) => _values.ContainsKey(name);

    public IReadOnlyDictionary<string, InputTensor> ByName() => Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);

    public void Dispose()
    {
        foreach (var v in _values.Values)
        {
            v.Dispose();
        }
        _values.Clear();
        foreach (var pin in _pins)
        {
            pin.Free();
        }
        _pins.Clear();
    }
}
