using System.Globalization;
using System.Text.Json;
using VmState.IO;

namespace VmState.Replay;

/// <summary>
/// A recording directory made by <see cref="ReplayRecorder"/>: QEMU's replay log and a manifest
/// (<c>recording.json</c>) that says what was recorded and how to replay it — QEMU's version, the user's command line
/// and the one that ran, the disks (images, formats, their size and time when recorded), the instruction count at the
/// end, the duration and how it ended.
/// </summary>
public sealed record ReplayRecording
{
    /// <summary>The manifest's file name in the directory.</summary>
    public const string ManifestName = "recording.json";

    /// <summary>The replay log's file name in the directory.</summary>
    public const string LogName = "replay.bin";

    /// <summary>The largest manifest read (a command line and a few disks take a few KiB).</summary>
    public const int MaxManifestBytes = 1 << 20;

    private const string FormatName = "vmstate-replay-recording";
    private const string Structure = "replay recording manifest";

    /// <summary>The recording directory (absolute).</summary>
    public required string Directory { get; init; }

    /// <summary>QEMU's version from its QMP greeting, e.g. "7.2.22".</summary>
    public required string QemuVersion { get; init; }

    /// <summary>QEMU's package string, e.g. "Debian 1:7.2+dfsg-7+deb12u18".</summary>
    public required string QemuPackage { get; init; }

    /// <summary>The user's command line (program first), as given.</summary>
    public required IReadOnlyList<string> Command { get; init; }

    /// <summary>The command line the recording ran (<see cref="ReplayCommandLine.Build"/>), for the record.</summary>
    public required IReadOnlyList<string> RecordedCommand { get; init; }

    /// <summary>The disks, in command-line order.</summary>
    public required IReadOnlyList<ReplayDrive> Drives { get; init; }

    /// <summary>When the recording started.</summary>
    public required DateTimeOffset Started { get; init; }

    /// <summary>How long QEMU recorded.</summary>
    public required TimeSpan Duration { get; init; }

    /// <summary>The guest instruction count at the end (QMP <c>query-replay</c>).</summary>
    public required ulong InstructionCount { get; init; }

    /// <summary>How the recording ended.</summary>
    public required ReplayEndReason End { get; init; }

    /// <summary>The replay log's length.</summary>
    public required long LogBytes { get; init; }

    /// <summary>The replay log's path.</summary>
    public string LogPath => Path.Combine(Directory, LogName);

    /// <summary>Reads the recording in <paramref name="directory"/>.</summary>
    /// <exception cref="FileNotFoundException">The directory has no manifest.</exception>
    /// <exception cref="VmStateFormatException">The manifest is not one (its offset and what was wrong are named).</exception>
    public static ReplayRecording Open(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        string dir = Path.GetFullPath(directory);
        string path = Path.Combine(dir, ManifestName);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{directory} is not a recording: it has no {ManifestName} (made by vmstate rr record)", path);
        }

        using FileStream f = File.OpenRead(path);
        if (f.Length > MaxManifestBytes)
        {
            throw new VmStateFormatException(0, Structure, $"{f.Length} bytes, more than the {MaxManifestBytes} a manifest may have");
        }

        byte[] bytes = new byte[f.Length];
        f.ReadExactly(bytes);
        return Parse(bytes, dir);
    }

    /// <summary>Decodes manifest bytes (hostile input: every member is checked); <paramref name="directory"/> is where it lives.</summary>
    /// <exception cref="VmStateFormatException">The bytes are not a manifest of this version.</exception>
    public static ReplayRecording Parse(ReadOnlySpan<byte> bytes, string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (bytes.Length > MaxManifestBytes)
        {
            throw new VmStateFormatException(0, Structure, $"{bytes.Length} bytes, more than the {MaxManifestBytes} a manifest may have");
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(bytes.ToArray(), new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException e)
        {
            throw new VmStateFormatException(e.BytePositionInLine ?? 0, Structure, $"not JSON: {e.Message}", e);
        }

        return Decode(doc, directory);
    }

    private static ReplayRecording DecodeRoot(JsonElement root, string directory)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw Bad("the top level is not an object");
        }

        if (String(root, "format") != FormatName)
        {
            throw Bad($"format is not \"{FormatName}\"");
        }

        if (Number(root, "version") != 1)
        {
            throw Bad($"version {Number(root, "version")} is not 1, the one this VmState reads");
        }

        JsonElement qemu = Member(root, "qemu", JsonValueKind.Object);
        var drives = new List<ReplayDrive>();
        foreach (JsonElement d in Member(root, "drives", JsonValueKind.Array).EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Object)
            {
                throw Bad("a drive is not an object");
            }

            long index = Number(d, "index");
            long size = Number(d, "size");
            if (index < 0 || index > 1024 || size < 0)
            {
                throw Bad($"drive index {index} or size {size} out of range");
            }

            drives.Add(new ReplayDrive((int)index, String(d, "file"), String(d, "format"), Member(d, "readOnly", JsonValueKind.True, JsonValueKind.False).GetBoolean(), size, Time(d, "modified").UtcDateTime));
        }

        if (drives.Count > 64)
        {
            throw Bad($"{drives.Count} drives, more than 64");
        }

        double seconds = Member(root, "durationSeconds", JsonValueKind.Number).GetDouble();
        if (!(seconds >= 0 && seconds < TimeSpan.MaxValue.TotalSeconds))
        {
            throw Bad($"durationSeconds {seconds} out of range");
        }

        JsonElement icount = Member(root, "instructionCount", JsonValueKind.Number);
        if (!icount.TryGetUInt64(out ulong instructions))
        {
            throw Bad("instructionCount is not an unsigned 64-bit integer");
        }

        long logBytes = Number(root, "logBytes");
        if (logBytes < 0)
        {
            throw Bad($"logBytes {logBytes} is negative");
        }

        string end = String(root, "end");
        return new ReplayRecording
        {
            Directory = directory,
            QemuVersion = String(qemu, "version"),
            QemuPackage = String(qemu, "package"),
            Command = Words(root, "command"),
            RecordedCommand = Words(root, "recordedCommand"),
            Drives = drives,
            Started = Time(root, "started"),
            Duration = TimeSpan.FromSeconds(seconds),
            InstructionCount = instructions,
            End = Enum.TryParse(end, ignoreCase: false, out ReplayEndReason r) && Enum.IsDefined(r) && !end.Any(char.IsDigit) ? r : throw Bad($"end \"{end}\" is not one of {string.Join(", ", Enum.GetNames<ReplayEndReason>())}"),
            LogBytes = logBytes,
        };
    }

    private static ReplayRecording Decode(JsonDocument doc, string directory)
    {
        using (doc)
        {
            try
            {
                return DecodeRoot(doc.RootElement, directory);
            }
            catch (InvalidOperationException e)
            {
                // A string member that is not valid UTF-8 (JsonElement.GetString).
                throw new VmStateFormatException(0, Structure, e.Message, e);
            }
        }
    }

    /// <summary>The manifest's bytes (UTF-8 JSON, indented).</summary>
    public byte[] ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("format", FormatName);
            w.WriteNumber("version", 1);
            w.WriteStartObject("qemu");
            w.WriteString("version", QemuVersion);
            w.WriteString("package", QemuPackage);
            w.WriteEndObject();
            WriteWords(w, "command", Command);
            WriteWords(w, "recordedCommand", RecordedCommand);
            w.WriteStartArray("drives");
            foreach (ReplayDrive d in Drives)
            {
                w.WriteStartObject();
                w.WriteNumber("index", d.Index);
                w.WriteString("file", d.File);
                w.WriteString("format", d.Format);
                w.WriteBoolean("readOnly", d.ReadOnly);
                w.WriteNumber("size", d.Size);
                w.WriteString("modified", d.ModifiedUtc.ToString("o", CultureInfo.InvariantCulture));
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteString("started", Started.ToString("o", CultureInfo.InvariantCulture));
            w.WriteNumber("durationSeconds", Math.Round(Duration.TotalSeconds, 3));
            w.WriteNumber("instructionCount", InstructionCount);
            w.WriteString("end", End.ToString());
            w.WriteNumber("logBytes", LogBytes);
            w.WriteEndObject();
        }

        ms.WriteByte((byte)'\n');
        return ms.ToArray();
    }

    /// <summary>Writes the manifest into <see cref="Directory"/> (a temporary file, then a rename).</summary>
    public void Save()
    {
        string path = Path.Combine(Directory, ManifestName);
        string temporary = path + ".tmp";
        File.WriteAllBytes(temporary, ToJson());
        File.Move(temporary, path, overwrite: true);
    }

    private static void WriteWords(Utf8JsonWriter w, string name, IReadOnlyList<string> words)
    {
        w.WriteStartArray(name);
        foreach (string s in words)
        {
            w.WriteStringValue(s);
        }

        w.WriteEndArray();
    }

    private static IReadOnlyList<string> Words(JsonElement o, string name)
    {
        var words = new List<string>();
        foreach (JsonElement e in Member(o, name, JsonValueKind.Array).EnumerateArray())
        {
            words.Add(e.ValueKind == JsonValueKind.String ? e.GetString()! : throw Bad($"{name} holds a {e.ValueKind}, not a string"));
        }

        return words.Count > 0 ? words : throw Bad($"{name} is empty");
    }

    private static JsonElement Member(JsonElement o, string name, params JsonValueKind[] kinds)
    {
        if (!o.TryGetProperty(name, out JsonElement e))
        {
            throw Bad($"no \"{name}\"");
        }

        return kinds.Contains(e.ValueKind) ? e : throw Bad($"\"{name}\" is a {e.ValueKind}, not a {string.Join(" or ", kinds)}");
    }

    private static string String(JsonElement o, string name) => Member(o, name, JsonValueKind.String).GetString()!;

    private static long Number(JsonElement o, string name) =>
        Member(o, name, JsonValueKind.Number).TryGetInt64(out long v) ? v : throw Bad($"\"{name}\" is not a 64-bit integer");

    private static DateTimeOffset Time(JsonElement o, string name) =>
        DateTimeOffset.TryParse(String(o, name), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out DateTimeOffset t) ? t : throw Bad($"\"{name}\" is not a time");

    private static VmStateFormatException Bad(string problem) => new(0, Structure, problem);

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Directory}: {InstructionCount} instructions in {Duration.TotalSeconds:F1} s ({End}), QEMU {QemuVersion}, log {LogBytes} bytes, {Drives.Count} disk(s): {string.Join(' ', Command)}");
}
