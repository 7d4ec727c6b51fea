using System.Globalization;
using System.Text.Json;
using VmState.IO;

namespace VmState.Fork;

/// <summary>
/// One clone started by <see cref="VmFork"/>: a QEMU of its own (daemonized, so it outlives the command that made it),
/// with its directory (disk overlays, console files, <c>clone.json</c>), QMP socket and MACs.
/// </summary>
public sealed record ForkClone
{
    /// <summary>The file in a clone's directory that describes it.</summary>
    public const string FileName = "clone.json";

    private const string Structure = "fork clone description";

    /// <summary>The clone's name (<c>PREFIX-N</c>).</summary>
    public required string Name { get; init; }

    /// <summary>Its directory.</summary>
    public required string Directory { get; init; }

    /// <summary>QEMU's process id.</summary>
    public required int ProcessId { get; init; }

    /// <summary>Its QMP socket.</summary>
    public required string QmpSocket { get; init; }

    /// <summary>The snapshot it was started from.</summary>
    public required string Snapshot { get; init; }

    /// <summary>Its NICs' MACs.</summary>
    public required IReadOnlyList<ForkMac> Macs { get; init; }

    /// <summary>When it was started.</summary>
    public required DateTimeOffset Started { get; init; }

    /// <summary>The QEMU command line it runs.</summary>
    public required IReadOnlyList<string> Command { get; init; }

    /// <summary>True while its QEMU process exists (the pid is alive and is a QEMU).</summary>
    public bool IsRunning
    {
        get
        {
            try
            {
                string cmdline = File.ReadAllText($"/proc/{ProcessId.ToString(CultureInfo.InvariantCulture)}/cmdline");
                return cmdline.Contains("qemu", StringComparison.Ordinal) && cmdline.Contains(QmpSocket, StringComparison.Ordinal);
            }
            catch (IOException)
            {
                return false;
            }
        }
    }

    /// <summary>The description's bytes.</summary>
    public byte[] ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("name", Name);
            w.WriteNumber("pid", ProcessId);
            w.WriteString("qmp", QmpSocket);
            w.WriteString("snapshot", Snapshot);
            w.WriteString("started", Started.ToString("o", CultureInfo.InvariantCulture));
            ForkMac.WriteArray(w, "macs", Macs);
            w.WriteStartArray("command");
            foreach (string s in Command)
            {
                w.WriteStringValue(s);
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        ms.WriteByte((byte)'\n');
        return ms.ToArray();
    }

    /// <summary>Reads a clone's description (hostile bytes: every member is checked).</summary>
    /// <exception cref="VmStateFormatException">Not a clone description.</exception>
    public static ForkClone Parse(ReadOnlySpan<byte> bytes, string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (bytes.Length > 1 << 20)
        {
            throw new VmStateFormatException(0, Structure, $"{bytes.Length} bytes, more than 1 MiB");
        }

        try
        {
            using var doc = JsonDocument.Parse(bytes.ToArray(), new JsonDocumentOptions { MaxDepth = 8 });
            JsonElement r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object)
            {
                throw Bad("the top level is not an object");
            }

            var macs = new List<ForkMac>();
            foreach (JsonElement m in Get(r, "macs", JsonValueKind.Array).EnumerateArray())
            {
                macs.Add(new ForkMac(Text(m, "device"), Text(m, "original"), Text(m, "mac")));
            }

            var command = new List<string>();
            foreach (JsonElement c in Get(r, "command", JsonValueKind.Array).EnumerateArray())
            {
                command.Add(c.ValueKind == JsonValueKind.String ? c.GetString()! : throw Bad("command holds a non-string"));
            }

            return new ForkClone
            {
                Name = Text(r, "name"),
                Directory = directory,
                ProcessId = Get(r, "pid", JsonValueKind.Number).TryGetInt32(out int pid) && pid > 0 ? pid : throw Bad("pid is not a positive 32-bit integer"),
                QmpSocket = Text(r, "qmp"),
                Snapshot = Text(r, "snapshot"),
                Started = DateTimeOffset.TryParse(Text(r, "started"), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out DateTimeOffset t) ? t : throw Bad("started is not a time"),
                Macs = macs,
                Command = command,
            };
        }
        catch (JsonException e)
        {
            throw new VmStateFormatException(e.BytePositionInLine ?? 0, Structure, $"not JSON: {e.Message}", e);
        }
        catch (InvalidOperationException e)
        {
            throw new VmStateFormatException(0, Structure, e.Message, e);
        }
    }

    private static JsonElement Get(JsonElement o, string name, JsonValueKind kind) =>
        o.ValueKind == JsonValueKind.Object && o.TryGetProperty(name, out JsonElement e) && e.ValueKind == kind ? e : throw Bad($"no {kind} \"{name}\"");

    private static string Text(JsonElement o, string name) => Get(o, name, JsonValueKind.String).GetString()!;

    private static VmStateFormatException Bad(string problem) => new(0, Structure, problem);
}
