namespace VmState.Arch.Arm64;

/// <summary>A virtual range that one or more adjacent descriptors map to one contiguous physical range.</summary>
/// <param name="VirtualAddress">First virtual address.</param>
/// <param name="PhysicalAddress">The physical address it maps to.</param>
/// <param name="Size">Length in bytes (a multiple of 4 KiB).</param>
/// <param name="Writable">The leaf descriptors allow writes (AP[2] clear).</param>
/// <param name="User">EL0 may access it (AP[1] set).</param>
/// <param name="UserExecuteNever">EL0 may not execute it (UXN, or an inherited UXNTable).</param>
public readonly record struct Arm64Mapping(ulong VirtualAddress, ulong PhysicalAddress, ulong Size, bool Writable, bool User, bool UserExecuteNever);
