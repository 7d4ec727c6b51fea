namespace VmState.Views;

/// <summary>What a <see cref="ListField{T}"/> holds, and so how a renderer writes it.</summary>
public enum FieldKind
{
    /// <summary>A string, or null (guest text: escape it for a terminal).</summary>
    Text,

    /// <summary>A whole number (<see cref="int"/>, <see cref="uint"/>, <see cref="long"/> or <see cref="ulong"/>), written in decimal.</summary>
    Integer,

    /// <summary>An address, a set of flags or another number read in hex (<see cref="ulong"/>), written as a <c>0x</c>-prefixed lower-case hex string.</summary>
    Hex,

    /// <summary>A <see cref="bool"/>.</summary>
    Boolean,
}
