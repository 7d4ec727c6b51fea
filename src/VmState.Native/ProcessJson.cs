using System.Buffers;
using System.Text.Json;
using VmState.Linux;
using VmState.Views;

namespace VmState.Native;

/// <summary>
/// The process list as JSON: the document <c>vmstate ps --json</c> (or <c>ps --threads --json</c>) prints, byte for byte (same members in the same
/// order, same indentation and escaping, a final newline), so a script can switch between the CLI and the library.
/// NativeAbiTests compares the two. The rows are the CLI's own: <see cref="LinuxListViews.Processes"/> written by
/// <see cref="ListJson"/>, with <see cref="Utf8JsonWriter"/> (no reflection, nothing for the AOT compiler to warn about).
/// </summary>
internal static class ProcessJson
{
    /// <summary>The UTF-8 JSON of <paramref name="processes"/> of the kernel <paramref name="release"/>, with the thread view's fields when <paramref name="threads"/> (as <c>ps --threads --json</c>).</summary>
    public static byte[] Write(string release, IReadOnlyList<LinuxProcess> processes, bool threads)
    {
        var buffer = new ArrayBufferWriter<byte>(256 + (processes.Count * 320));
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("release", release);
            w.WritePropertyName("processes");
            ListJson.WriteArray(w, LinuxListViews.Processes(threads), processes);
            w.WriteEndObject();
        }

        buffer.Write("\n"u8);
        return buffer.WrittenSpan.ToArray();
    }
}
