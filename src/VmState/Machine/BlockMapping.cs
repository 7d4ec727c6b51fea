namespace VmState.Machine;

/// <summary>A piece of a RAM block mapped at a guest-physical address.</summary>
/// <param name="GuestPhysicalAddress">Where the piece starts in guest-physical address space.</param>
/// <param name="BlockOffset">Offset of the piece in its RAM block.</param>
/// <param name="Length">Length in bytes.</param>
public readonly record struct BlockMapping(ulong GuestPhysicalAddress, ulong BlockOffset, ulong Length);
