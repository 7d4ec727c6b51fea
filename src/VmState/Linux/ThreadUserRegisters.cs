namespace VmState.Linux;

/// <summary>
/// A user thread's registers as <c>struct user_regs_struct</c> (the pr_reg of a process core's NT_PRSTATUS, in
/// <see cref="Arch.X86.X86Registers.UserRegs"/> order) and where they were found: the vCPU it runs on, or the pt_regs
/// saved at the top of its kernel stack.
/// </summary>
/// <param name="Tid">The thread id.</param>
/// <param name="Registers">The 27 quadwords, r15 first (<c>arch/x86/include/asm/user_64.h</c>).</param>
/// <param name="Source">Where they were read, for a reader.</param>
public sealed record ThreadUserRegisters(int Tid, IReadOnlyList<ulong> Registers, string Source);
