namespace VmState.Arch.X86;

/// <summary>
/// A segment register as QEMU keeps it (<c>SegmentCache</c>): selector, base, limit and the descriptor flags
/// (dword 2 of the descriptor masked to bits 8–23: type, S, DPL, P, AVL, L, D/B, G).
/// </summary>
public readonly record struct X86Segment(uint Selector, ulong Base, uint Limit, uint Flags)
{
    /// <summary>Descriptor privilege level from the flags.</summary>
    public int Dpl => (int)((Flags >> 13) & 3);

    /// <summary>True for a 64-bit code segment (L bit).</summary>
    public bool Long => (Flags & (1u << 21)) != 0;
}
