using System.Text.Json;

namespace VmState.Formats.Migration;

/// <summary>
/// The JSON VM description QEMU appends after the EOF byte of a migration stream (QEMU 7.2
/// <c>qemu_savevm_state_complete_precopy_non_iterable</c>): the only way to split device sections into fields.
/// </summary>
internal sealed class VmDescription
{
    private const int MaxFieldCount = 1_000_000;
    private readonly Dictionary<(string, int), List<DeviceDescription>> _byKey = new();
    private int _fieldCount;

    private readonly byte[] _json;
    private string? _rawJson;

    private VmDescription(int pageSize, IReadOnlyList<DeviceDescription> devices, byte[] json)
    {
        PageSize = pageSize;
        Devices = devices;
        _json = json;
        foreach (DeviceDescription d in devices)
        {
            if (!_byKey.TryGetValue((d.Name, d.InstanceId), out List<DeviceDescription>? list))
            {
                list = [];
                _byKey[(d.Name, d.InstanceId)] = list;
            }

            list.Add(d);
        }
    }

    /// <summary>The target page size (4096 on x86).</summary>
    public int PageSize { get; }

    /// <summary>The described (non-iterable) device sections, in stream order.</summary>
    public IReadOnlyList<DeviceDescription> Devices { get; }

    /// <summary>The JSON text as found in the stream (decoded when first asked for).</summary>
    public string RawJson => _rawJson ??= System.Text.Encoding.UTF8.GetString(_json);

    /// <summary>
    /// The description of the <paramref name="occurrence"/>-th section with this idstr and instance id (QEMU can
    /// emit the same pair twice, e.g. "slirp" 0 for two user-mode netdevs), or null.
    /// </summary>
    public DeviceDescription? Find(string idStr, int instanceId, int occurrence = 0) =>
        _byKey.TryGetValue((idStr, instanceId), out List<DeviceDescription>? d) && occurrence < d.Count ? d[occurrence] : null;

    /// <summary>Parses the JSON; <paramref name="offset"/> is where it starts in the stream, for messages.</summary>
    public static VmDescription Parse(ReadOnlySpan<byte> json, long offset) => Parse(json.ToArray(), offset);

    /// <summary>
    /// Parses the JSON, which the description keeps (not copied); <paramref name="offset"/> is where it starts in the
    /// stream, for messages.
    /// </summary>
    public static VmDescription Parse(byte[] json, long offset)
    {
        try
        {
            using JsonDocument doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 256 });
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new IO.VmStateFormatException(offset, "VM description", "expected a JSON object");
            }

            int pageSize = root.TryGetProperty("page_size", out JsonElement ps) && ps.TryGetInt32(out int p) ? p : 4096;

            // The reader indexes RAM by this page size until a configuration section says otherwise: 0 divided by
            // zero, and a non-power of two breaks the flags/offset split of RAM records. QEMU's TARGET_PAGE_BITS
            // is 10-24, the range ReadConfiguration accepts for target-page-bits.
            if (pageSize is < 1024 or > 1 << 24 || (pageSize & (pageSize - 1)) != 0)
            {
                throw new IO.VmStateFormatException(offset, "VM description", $"\"page_size\" {pageSize} (expected a power of two from 1024 to 16777216)");
            }
            var list = new List<DeviceDescription>();
            var tmp = new VmDescription(pageSize, [], []);
            if (root.TryGetProperty("devices", out JsonElement devices))
            {
                if (devices.ValueKind != JsonValueKind.Array)
                {
                    throw new IO.VmStateFormatException(offset, "VM description", "\"devices\" is not an array");
                }

                foreach (JsonElement d in devices.EnumerateArray())
                {
                    string name = RequireString(d, "name", offset);
                    int instance = RequireInt(d, "instance_id", offset);
                    list.Add(new DeviceDescription(name, instance, tmp.ParseVmsd(d, offset, 0)));
                }
            }

            return new VmDescription(pageSize, list, json);
        }
        catch (JsonException e)
        {
            throw new IO.VmStateFormatException(offset + (e.BytePositionInLine ?? 0), "VM description", $"invalid JSON: {e.Message}", e);
        }
        catch (InvalidOperationException e)
        {
            // JsonElement.GetString on a string that is not valid UTF-8 (found by fuzzing).
            throw new IO.VmStateFormatException(offset, "VM description", $"a JSON string is not valid UTF-8: {e.Message}", e);
        }
    }

    private VmsdDescription ParseVmsd(JsonElement e, long offset, int depth)
    {
        if (depth > 64)
        {
            throw new IO.VmStateFormatException(offset, "VM description", "structures nested more than 64 levels deep");
        }

        string vmsdName = e.TryGetProperty("vmsd_name"u8, out JsonElement vn) && vn.ValueKind == JsonValueKind.String ? vn.GetString()! : string.Empty;
        int version = e.TryGetProperty("version"u8, out JsonElement ve) && ve.TryGetInt32(out int v) ? v : 0;
        var fields = new List<FieldDescription>();
        if (e.TryGetProperty("fields"u8, out JsonElement fs) && fs.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement f in fs.EnumerateArray())
            {
                if (++_fieldCount > MaxFieldCount)
                {
                    throw new IO.VmStateFormatException(offset, "VM description", $"more than {MaxFieldCount} fields");
                }

                fields.Add(ParseField(f, offset, depth));
            }
        }

        var subsections = new List<VmsdDescription>();
        if (e.TryGetProperty("subsections"u8, out JsonElement ss) && ss.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement s in ss.EnumerateArray())
            {
                subsections.Add(ParseVmsd(s, offset, depth + 1));
            }
        }

        return new VmsdDescription(vmsdName, version, fields, subsections);
    }

    private FieldDescription ParseField(JsonElement f, long offset, int depth)
    {
        string name = RequireString(f, "name"u8, offset);
        string type = f.TryGetProperty("type"u8, out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "buffer";
        int size = f.TryGetProperty("size"u8, out JsonElement s) && s.TryGetInt32(out int sz) ? sz : -1;
        if (size < 0)
        {
            throw new IO.VmStateFormatException(offset, "VM description", $"field \"{name}\" has no valid \"size\"");
        }

        int? arrayLen = null;
        if (f.TryGetProperty("array_len"u8, out JsonElement al))
        {
            if (!al.TryGetInt32(out int n) || n < 0)
            {
                throw new IO.VmStateFormatException(offset, "VM description", $"field \"{name}\" has an invalid \"array_len\"");
            }

            arrayLen = n;
        }

        int? index = f.TryGetProperty("index"u8, out JsonElement ix) && ix.TryGetInt32(out int i) ? i : null;
        VmsdDescription? nested = null;
        if (f.TryGetProperty("struct"u8, out JsonElement st) && st.ValueKind == JsonValueKind.Object)
        {
            nested = ParseVmsd(st, offset, depth + 1);
        }
        else if (f.TryGetProperty("fields"u8, out JsonElement _))
        {
            // VMSTATE_WITH_TMP: the helper vmsd is described directly in the field object (QEMU 7.2 vmstate.c).
            nested = ParseVmsd(f, offset, depth + 1);
        }

        return new FieldDescription(name, type, size, arrayLen, index, nested);
    }

    private static string RequireString(JsonElement e, string property, long offset)
    {
        if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty(property, out JsonElement v) || v.ValueKind != JsonValueKind.String)
        {
            throw new IO.VmStateFormatException(offset, "VM description", $"an entry lacks the string \"{property}\"");
        }

        return v.GetString()!;
    }

    /// <summary>As above, with the property name in UTF-8: no conversion of the name at each of the description's many lookups.</summary>
    private static string RequireString(JsonElement e, ReadOnlySpan<byte> property, long offset)
    {
        if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty(property, out JsonElement v) || v.ValueKind != JsonValueKind.String)
        {
            throw new IO.VmStateFormatException(offset, "VM description", $"an entry lacks the string \"{System.Text.Encoding.UTF8.GetString(property)}\"");
        }

        return v.GetString()!;
    }

    private static int RequireInt(JsonElement e, string property, long offset)
    {
        if (!e.TryGetProperty(property, out JsonElement v) || !v.TryGetInt32(out int i))
        {
            throw new IO.VmStateFormatException(offset, "VM description", $"an entry lacks the integer \"{property}\"");
        }

        return i;
    }
}
