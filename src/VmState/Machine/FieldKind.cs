namespace VmState.Machine;

/// <summary>How a device field's value is represented.</summary>
public enum FieldKind
{
    /// <summary>An integer (signed or unsigned, 1–8 bytes, big-endian on the wire).</summary>
    Integer,

    /// <summary>A boolean (one byte).</summary>
    Bool,

    /// <summary>Raw bytes (buffers, PCI config, custom encodings).</summary>
    Bytes,

    /// <summary>A nested structure (its own fields and subsections).</summary>
    Struct,

    /// <summary>An array: <see cref="DeviceField.Elements"/> holds the elements.</summary>
    Array,
}
