namespace VmState.Memory;

/// <summary>A named range of guest-physical addresses.</summary>
/// <param name="Start">First guest-physical address.</param>
/// <param name="Length">Length in bytes.</param>
/// <param name="Name">What backs it (e.g. "pc.ram", "0000:00:02.0/vga.vram").</param>
public readonly record struct MemoryRange(ulong Start, ulong Length, string Name)
{
    /// <summary>One past the last address.</summary>
    public ulong End => Start + Length;

    /// <summary>True when <paramref name="address"/> is inside the range.</summary>
    public bool Contains(ulong address) => address >= Start && address - Start < Length;

    /// <inheritdoc />
    public override string ToString() => $"[0x{Start:x}, 0x{End:x}) {Name}";
}
