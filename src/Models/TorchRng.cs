using static TorchSharp.torch;

namespace OnnxLora.Models;

/// <summary>
/// The state of torch's default CPU generator (which dropout draws from) as bytes: what a resumable
/// checkpoint stores and what gradient checkpointing replays (PyTorch's <c>torch.get_rng_state</c> /
/// <c>torch.set_rng_state</c>).
/// </summary>
public static class TorchRng
{
    /// <summary>The default generator's state.</summary>
    public static byte[] Capture()
    {
        using var state = random.get_rng_state();
        return state.data<byte>().ToArray();
    }

    /// <summary>Sets the default generator to a state <see cref="Capture"/> returned.</summary>
    public static void Restore(byte[] state)
    {
        ArgumentNullException.ThrowIfNull(state);
        using var t = tensor(state, ScalarType.Byte);
        random.set_rng_state(t);
    }
}
