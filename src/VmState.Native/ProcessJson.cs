using System.Buffers;
using System.Globalization;
using System.Text.Json;
using VmState.Linux;

namespace VmState.Native;

/// <summary>
/// The process list as JSON: the document <c>vmstate ps --json</c> prints, byte for byte (same members in the same
/// order, same indentation and escaping, a final newline), so a script can switch between the CLI and the library.
/// NativeAbiTests compares the two. Written with <see cref="Utf8JsonWriter"/>: no reflection, nothing for the AOT
/// compiler to warn about.
/// </summary>
internal static class ProcessJson
{
    /// <summary>The UTF-8 JSON of <paramref name="processes"/> of the kernel <paramref name="release"/>.</summary>
    public static byte[] Write(string release, IReadOnlyList<LinuxProcess> processes)
    {
        var buffer = new ArrayBufferWriter<byte>(256 + (processes.Count * 320));
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("release", release);
            w.WriteStartArray("processes");
            foreach (LinuxProcess p in processes)
            {
                w.WriteStartObject();
                w.WriteNumber("pid", p.Pid);
                w.WriteNumber("tgid", p.Tgid);
                w.WriteNumber("ppid", p.Ppid);
                w.WriteNumber("uid", p.Uid);
                w.WriteNumber("gid", p.Gid);
                w.WriteString("state", p.State.ToString());
                w.WriteString("comm", p.Comm);
                w.WriteBoolean("kernelThread", p.IsKernelThread);
                w.WriteNumber("threads", p.Threads);
                w.WriteNumber("startTimeNs", p.StartTimeNs);
                if (p.Cmdline is string c)
                {
                    w.WriteString("cmdline", c);
                }
                else
                {
                    w.WriteNull("cmdline");
                }

                w.WriteString("task", "0x" + p.TaskAddress.ToString("x", CultureInfo.InvariantCulture));
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        buffer.Write("\n"u8);
        return buffer.WrittenSpan.ToArray();
    }
}
