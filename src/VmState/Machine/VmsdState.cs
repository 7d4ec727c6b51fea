namespace VmState.Machine;

/// <summary>The decoded state of one VMStateDescription instance: its fields then its subsections.</summary>
public sealed class VmsdState
{
    /// <summary>Creates the state.</summary>
    public VmsdState(string vmsdName, int version, long offset, IReadOnlyList<DeviceField> fields, IReadOnlyList<VmsdState> subsections)
    {
        VmsdName = vmsdName;
        Version = version;
        Offset = offset;
        Fields = fields;
        Subsections = subsections;
    }

    /// <summary>The vmsd name (for a subsection, its full name such as "e1000/full_mac_state").</summary>
    public string VmsdName { get; }

    /// <summary>The version the state was saved at.</summary>
    public int Version { get; }

    /// <summary>Offset in the stream of the first field (for a subsection, of the 0x05 marker).</summary>
    public long Offset { get; }

    /// <summary>Fields in wire order.</summary>
    public IReadOnlyList<DeviceField> Fields { get; }

    /// <summary>Subsections in wire order.</summary>
    public IReadOnlyList<VmsdState> Subsections { get; }

    /// <summary>The first field with <paramref name="name"/>, or null.</summary>
    public DeviceField? Field(string name)
    {
        foreach (DeviceField f in Fields)
        {
            if (f.Name == name)
            {
                return f;
            }
        }

        return null;
    }

    /// <summary>The subsection with <paramref name="name"/>, or null.</summary>
    public VmsdState? Subsection(string name)
    {
        foreach (VmsdState s in Subsections)
        {
            if (s.VmsdName == name)
            {
                return s;
            }
        }

        return null;
    }
}
