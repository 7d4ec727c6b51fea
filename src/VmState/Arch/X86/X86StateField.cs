namespace VmState.Arch.X86;

/// <summary>
/// Where a register lives in QEMU's vmsd "cpu" section (QEMU 7.2 <c>target/i386/machine.c</c>, vmstate_x86_cpu):
/// a field by name, optionally an element of an array field of a known length, optionally a member of that element
/// (the <c>SegmentCache</c> structures of <c>env.segs</c>).
/// </summary>
/// <param name="Name">The field's name as the VM description gives it ("env.eip", "env.cr[3]", "env.regs").</param>
/// <param name="Index">The element of an array field, or -1 for a scalar field.</param>
/// <param name="Length">The array's length QEMU declares (16 for <c>env.regs</c>, 6 for <c>env.segs</c>, 8 for <c>env.dr</c>); an array of another length is not this field.</param>
/// <param name="Member">The member of a structure element ("selector", "base"), or null.</param>
/// <param name="Required">True when a "cpu" section without the field is malformed (it is in every version QEMU 7.2 loads).</param>
public sealed record X86StateField(string Name, int Index = -1, int Length = 0, string? Member = null, bool Required = false);
