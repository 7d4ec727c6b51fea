namespace VmState.Linux;

/// <summary>One entry of a maple tree and the index range the tree stores it for (what <c>mt_for_each</c> yields).</summary>
/// <param name="First">First index of the range (for a VMA tree: <c>vm_start</c>).</param>
/// <param name="Last">Last index of the range, inclusive (for a VMA tree: <c>vm_end - 1</c>).</param>
/// <param name="Entry">The stored pointer (for a VMA tree: the <c>struct vm_area_struct</c>).</param>
public readonly record struct MapleTreeEntry(ulong First, ulong Last, ulong Entry);
