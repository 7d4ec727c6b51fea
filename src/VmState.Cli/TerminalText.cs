using System.Text;

namespace VmState.Cli;

/// <summary>
/// Keeps guest-controlled text (process names, kernel log lines, device and snapshot names, file names in a guest)
/// from reaching the user's terminal as control sequences: a guest that names a process <c>ESC]0;…BEL</c> or logs
/// <c>ESC[2J</c> must not retitle, clear or reprogram the terminal of whoever inspects it. Every control character
/// but newline and tab (C0, DEL, and the C1 range that some terminals also obey) is written as <c>\xNN</c>, the
/// escape the kernel's own <c>/dev/kmsg</c> uses. JSON output is written as bytes by a JSON writer, which escapes
/// these characters itself.
/// </summary>
internal static class TerminalText
{
    /// <summary>Standard output as the process got it (for writers that emit their own, trusted, sequences).</summary>
    public static TextWriter RawOut { get; private set; } = Console.Out;

    /// <summary>Standard error as the process got it.</summary>
    public static TextWriter RawError { get; private set; } = Console.Error;

    /// <summary>
    /// A Spectre console on <paramref name="writer"/> (one of the raw streams): colours and styles only when the stream
    /// is a terminal, so output piped or redirected to a file carries no escape sequences whatever TERM says.
    /// </summary>
    public static Spectre.Console.IAnsiConsole CreateConsole(TextWriter writer, bool redirected) =>
        Spectre.Console.AnsiConsole.Create(new Spectre.Console.AnsiConsoleSettings
        {
            Out = new Spectre.Console.AnsiConsoleOutput(writer),
            Ansi = redirected ? Spectre.Console.AnsiSupport.No : Spectre.Console.AnsiSupport.Detect,
            ColorSystem = redirected ? Spectre.Console.ColorSystemSupport.NoColors : Spectre.Console.ColorSystemSupport.Detect,
        });

    /// <summary>Routes Console.Out and Console.Error through the escaping writer.</summary>
    public static void Install()
    {
        RawOut = Console.Out;
        RawError = Console.Error;
        Console.SetOut(new EscapingWriter(RawOut));
        Console.SetError(new EscapingWriter(RawError));
    }

    /// <summary>True for the characters that are escaped.</summary>
    public static bool NeedsEscape(char c) => (c < ' ' && c != '\n' && c != '\t') || (c >= '\x7f' && c <= '\x9f');

    /// <summary><paramref name="text"/> with every control character but newline and tab written as <c>\xNN</c>.</summary>
    public static string Escape(string text)
    {
        if (!text.AsSpan().ContainsAnyInRange('\0', '\x1f') && !text.AsSpan().ContainsAnyInRange('\x7f', '\x9f'))
        {
            return text;
        }

        var b = new StringBuilder(text.Length + 16);
        foreach (char c in text)
        {
            Append(b, c);
        }

        return b.ToString();
    }

    /// <summary><paramref name="text"/> escaped for the terminal and for Spectre markup (square brackets).</summary>
    public static string Markup(string text) => Spectre.Console.Markup.Escape(Escape(text));

    private static void Append(StringBuilder b, char c)
    {
        if (NeedsEscape(c))
        {
            b.Append(@"\x").Append(((int)c).ToString("x2", System.Globalization.CultureInfo.InvariantCulture));
        }
        else
        {
            b.Append(c);
        }
    }

    /// <summary>A TextWriter that escapes control characters on their way to <paramref name="inner"/>.</summary>
    private sealed class EscapingWriter(TextWriter inner) : TextWriter
    {
        public override Encoding Encoding => inner.Encoding;

        public override void Write(char value)
        {
            if (NeedsEscape(value))
            {
                inner.Write(Escape(value.ToString()));
            }
            else
            {
                inner.Write(value);
            }
        }

        public override void Write(string? value) => inner.Write(value is null ? null : Escape(value));

        public override void Write(char[] buffer, int index, int count) => Write(new string(buffer, index, count));

        public override void Write(ReadOnlySpan<char> buffer) => Write(buffer.ToString());

        public override void WriteLine(string? value) => inner.WriteLine(value is null ? null : Escape(value));

        public override void WriteLine() => inner.WriteLine();

        public override void Flush() => inner.Flush();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Flush();
            }

            base.Dispose(disposing);
        }
    }
}
