using OnnxLora.Core;

namespace OnnxLora.Testing;

/// <summary>Shared by the test projects (linked into each). Asserts that an action fails with <see cref="OnnxLoraException"/> of kind <see cref="ErrorKind.BadInput"/>: the user's input is to blame.</summary>
internal static class BadInput
{
    public static OnnxLoraException Throws(Action action, string message = "") => Check(Assert.ThrowsExactly<OnnxLoraException>(action, message));

    public static OnnxLoraException Throws(Func<object?> action, string message = "") => Check(Assert.ThrowsExactly<OnnxLoraException>(action, message));

    private static OnnxLoraException Check(OnnxLoraException e)
    {
        Assert.AreEqual(ErrorKind.BadInput, e.Kind, e.Message);
        return e;
    }
}
