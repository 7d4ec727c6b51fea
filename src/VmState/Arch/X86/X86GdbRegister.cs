namespace VmState.Arch.X86;

/// <summary>
/// How gdb's x86-64 target description names and numbers a register (GDB manual, "i386 Features";
/// gdb's <c>features/i386/64bit-core.xml</c>, <c>64bit-sse.xml</c>, <c>64bit-segments.xml</c>).
/// </summary>
/// <param name="Number">Register number: its position in the 'g' packet and the regnum of target.xml.</param>
/// <param name="Name">gdb's name for it ("eflags", "k_gs_base").</param>
/// <param name="Bits">Size in bits in the 'g' packet.</param>
/// <param name="Type">Target-description type ("int64", "code_ptr", "vec128").</param>
/// <param name="Feature">The target-description feature it belongs to.</param>
public sealed record X86GdbRegister(int Number, string Name, int Bits, string Type, string Feature);
