namespace VmState.Arch.X86;

/// <summary>A run of virtual addresses mapped to contiguous physical addresses with the same permissions.</summary>
public readonly record struct VirtualMapping(ulong VirtualAddress, ulong PhysicalAddress, ulong Size, bool Writable, bool User, bool NoExecute);
