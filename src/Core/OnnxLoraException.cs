namespace OnnxLora.Core;

/// <summary>
/// What kind of failure an error is. It decides merge-export's exit code, whatever .NET type the error
/// happens to have: <see cref="BadInput"/> 2, <see cref="Cancelled"/> 130, <see cref="Internal"/> 70.
/// </summary>
public enum ErrorKind
{
    /// <summary>
    /// A file, folder, option or model the user gave is malformed, missing, clashes with an existing output,
    /// or asks for something OnnxLora does not support. The user can fix it.
    /// </summary>
    BadInput,

    /// <summary>
    /// The user cancelled the operation. Code raises <see cref="OperationCanceledException"/> for it; the kind
    /// names it in reports (merge-export's --json).
    /// </summary>
    Cancelled,

    /// <summary>An inconsistency inside OnnxLora: a bug, not something the user did.</summary>
    Internal,
}

/// <summary>
/// The one error type of OnnxLora. Raised through the named factories below (or an area's thin helper that
/// calls them), so every message has one of two shapes: <c>{where}: {what}: found {found}, expected
/// {expected}.</c> or <c>{where}: {message}</c>, where <c>where</c> is the file, folder, option or module the
/// error is about.
/// </summary>
/// <remarks>
/// Argument checks of our own APIs called wrongly by our own code (lengths that must agree, a builder used
/// out of order, <see cref="ArgumentNullException"/>) stay .NET exceptions: they report bugs, and a caller
/// can tell them apart from <see cref="ErrorKind.BadInput"/> by type.
/// </remarks>
public sealed class OnnxLoraException : Exception
{
    private OnnxLoraException(ErrorKind kind, string where, string message, Exception? inner)
        : base(message, inner)
    {
        Kind = kind;
        Where = where;
    }

    /// <summary>Whether the user can fix it (<see cref="ErrorKind.BadInput"/>) or it is a bug.</summary>
    public ErrorKind Kind { get; }

    /// <summary>The file, folder, option or module the error is about; empty when it is about none.</summary>
    public string Where { get; }

    /// <summary>
    /// The message format: <c>{where}: {what}: found {found}, expected {expected}.</c> An empty
    /// <paramref name="what"/> or <paramref name="where"/> is left out with its colon.
    /// </summary>
    public static string Describe(string where, string what, string found, string expected) =>
        Describe(where, what.Length == 0 ? $"found {found}, expected {expected}." : $"{what}: found {found}, expected {expected}.");

    /// <summary>The free-form message format: <c>{where}: {message}</c> (just the message when where is empty).</summary>
    public static string Describe(string where, string message) => where.Length == 0 ? message : $"{where}: {message}";

    /// <summary>A file, folder, tensor, field or module the user gave holds a value OnnxLora cannot take.</summary>
    public static OnnxLoraException Invalid(string where, string what, string found, string expected) =>
        new(ErrorKind.BadInput, where, Describe(where, what, found, expected), null);

    /// <summary>A file, folder or module the user gave is unusable; <paramref name="message"/> says why.</summary>
    public static OnnxLoraException Invalid(string where, string message, Exception? inner = null) =>
        new(ErrorKind.BadInput, where, Describe(where, message), inner);

    /// <summary>An option (a CLI option or a field of an options record) has a value OnnxLora cannot take.</summary>
    public static OnnxLoraException InvalidOption(string option, string found, string expected) =>
        new(ErrorKind.BadInput, option, Describe("option " + option, "", found, expected), null);

    /// <summary>An option does not fit the other options or the inputs; <paramref name="message"/> says why.</summary>
    public static OnnxLoraException InvalidOption(string option, string message) =>
        new(ErrorKind.BadInput, option, Describe("option " + option, message), null);

    /// <summary>A file or folder the user named does not exist: <c>{path}: {role} not found.</c></summary>
    public static OnnxLoraException NotFound(string role, string path) =>
        new(ErrorKind.BadInput, path, Describe(path, $"{role} not found."), null);

    /// <summary>An output would replace an existing file or folder and overwriting was not asked for.</summary>
    public static OnnxLoraException OutputExists(string path) =>
        new(ErrorKind.BadInput, path, Describe(path, "output exists; pass --force (overwrite) to replace it."), null);

    /// <summary>
    /// An output appeared while we were writing it (another process created it); nothing was replaced.
    /// </summary>
    public static OnnxLoraException OutputAppeared(string path) =>
        new(ErrorKind.BadInput, path, Describe(path, "output appeared while writing; pass --force (overwrite) to replace it."), null);

    /// <summary>An inconsistency OnnxLora found in itself: a bug, reported as one.</summary>
    public static OnnxLoraException Internal(string where, string message, Exception? inner = null) =>
        new(ErrorKind.Internal, where, Describe(where, message), inner);
}
