using System.Globalization;
using System.Text;

namespace OnnxLora.MergeExport.Build.Internals;

/// <summary>MSBuild's escaping for item specs and metadata values that tasks hand back to the engine.</summary>
internal static class MSBuildText
{
    /// <summary>Escapes '%', ';', '$', '@', '\'', '*' and '?' as %XX, so a path stays one literal path.</summary>
    public static string Escape(string value)
    {
        var text = new StringBuilder(value.Length);
        foreach (char c in value)
        {
            if (c is '%' or ';' or '$' or '@' or '\'' or '*' or '?')
            {
                text.Append('%').Append(((int)c).ToString("X2", CultureInfo.InvariantCulture));
            }
            else
            {
                text.Append(c);
            }
        }
        return text.ToString();
    }
}
