namespace VmState.Machine;

/// <summary>
/// One field of a device's saved state, decoded through the VM description: its name, QEMU type name, where its
/// bytes are in the snapshot stream, and its value.
/// </summary>
public sealed class DeviceField
{
    /// <summary>Creates a field.</summary>
    public DeviceField(string name, string type, FieldKind kind, long offset, int size)
    {
        Name = name;
        Type = type;
        Kind = kind;
        Offset = offset;
        Size = size;
    }

    /// <summary>Field name as the VM description gives it (e.g. "env.regs", "mac_reg[RCTL]").</summary>
    public string Name { get; }

    /// <summary>QEMU's VMStateInfo name ("uint32", "buffer", "pci config", "struct" …).</summary>
    public string Type { get; }

    /// <summary>How the value is represented.</summary>
    public FieldKind Kind { get; }

    /// <summary>Offset of the field's first byte in the migration stream.</summary>
    public long Offset { get; }

    /// <summary>Bytes the field occupies on the wire (all elements for an array).</summary>
    public int Size { get; }

    /// <summary>For per-element described arrays: the element index the description gave.</summary>
    public int? Index { get; init; }

    /// <summary>Integer value (two's complement for signed types) for Integer and Bool kinds.</summary>
    public ulong Integer { get; init; }

    /// <summary>True when the integer type is signed.</summary>
    public bool Signed { get; init; }

    /// <summary>Raw bytes for the Bytes kind.</summary>
    public byte[]? Bytes { get; init; }

    /// <summary>The nested structure for the Struct kind.</summary>
    public VmsdState? Struct { get; init; }

    /// <summary>Elements for the Array kind.</summary>
    public IReadOnlyList<DeviceField>? Elements { get; init; }

    /// <summary>Integer value as a signed number.</summary>
    public long SignedInteger => Size switch
    {
        1 => (sbyte)Integer,
        2 => (short)Integer,
        4 => (int)Integer,
        _ => (long)Integer,
    };
}
