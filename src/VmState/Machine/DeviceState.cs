namespace VmState.Machine;

/// <summary>One device section of a snapshot: its identity, where it is, and its decoded state.</summary>
public sealed class DeviceState
{
    /// <summary>Creates the device.</summary>
    public DeviceState(string idStr, int instanceId, int sectionId, long offset, long length, VmsdState? state)
    {
        IdStr = idStr;
        InstanceId = instanceId;
        SectionId = sectionId;
        Offset = offset;
        Length = length;
        State = state;
    }

    /// <summary>The section's idstr, e.g. "0000:00:03.0/e1000", "cpu", "serial".</summary>
    public string IdStr { get; }

    /// <summary>Instance id (distinguishes repeated devices; the cpu_index for CPUs).</summary>
    public int InstanceId { get; }

    /// <summary>Section id as numbered in the stream.</summary>
    public int SectionId { get; }

    /// <summary>Offset of the section body in the stream.</summary>
    public long Offset { get; }

    /// <summary>Length of the section body (without header and footer).</summary>
    public long Length { get; }

    /// <summary>The decoded state, or null when the section could not be decoded (no VM description).</summary>
    public VmsdState? State { get; }

    /// <summary>Well-known values decoded from the raw fields (e.g. "mac" for NICs), for display.</summary>
    public Dictionary<string, string> Decoded { get; } = new(StringComparer.Ordinal);

    /// <summary>A key that names the device uniquely: idstr, plus "#instance" when the instance id is not 0.</summary>
    public string Key => InstanceId == 0 ? IdStr : $"{IdStr}#{InstanceId}";
}
