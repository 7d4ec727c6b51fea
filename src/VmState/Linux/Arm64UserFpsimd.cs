using VmState.Arch.Arm64;
using VmState.Formats.Elf;

namespace VmState.Linux;

/// <summary>
/// An AArch64 thread's FP/SIMD registers as <c>struct user_fpsimd_state</c> (v0–v31, fpsr, fpcr: the NT_FPREGSET
/// note of a process core, as the kernel's own core dump writes it from <c>fpr_get</c>, arm64 <c>ptrace.c</c>).
/// Linux 6.1 (<c>arch/arm64/kernel/fpsimd.c</c>) restores a task's FP/SIMD state lazily: while the task is
/// <c>current</c> and TIF_FOREIGN_FPSTATE is clear, its registers are the CPU's; whenever it is switched out (or the
/// kernel uses NEON itself, which sets TIF_FOREIGN_FPSTATE) <c>fpsimd_save</c> stores them into
/// <c>thread.uw.fpsimd_state</c>, or, when the task uses SVE (<c>thread.fp_type</c> FP_STATE_SVE, or TIF_SVE on
/// kernels without fp_type), into <c>thread.sve_state</c> in the SVE layout, whose Z registers start with the V
/// registers (FPSR and FPCR still go to uw.fpsimd_state).
/// </summary>
internal static class Arm64UserFpsimd
{
    // arm64 asm/thread_info.h (6.1).
    private const int TifForeignFpstate = 3;
    private const int TifSve = 23;

    // arm64 uapi asm/sigcontext.h: SVE_VL_MIN 16, SVE_VL_MAX 256 bytes; Zn at n * VL in the saved layout
    // (__SVE_ZREG_OFFSET(vq, n) = n * vq * 16).
    private const int SveVlMin = 16;
    private const int SveVlMax = 256;

    /// <summary>
    /// The 528-byte <c>user_fpsimd_state</c> of <paramref name="task"/> and where it came from; <paramref name="cpu"/>
    /// is the vCPU the task runs on (null when it is not running).
    /// </summary>
    /// <exception cref="KernelDataException">Unreadable or implausible kernel data.</exception>
    public static (byte[] State, string Source) Read(LinuxKernel kernel, KernelObject task, int? cpu)
    {
        KernelObject thread = task.Member("thread");
        KernelObject saved = thread.Member("uw.fpsimd_state");
        if (saved.Size != Arm64CoreNotes.FpregsetSize)
        {
            throw new KernelDataException(saved.Address, saved.Expression, $"struct user_fpsimd_state is {saved.Size} bytes in the kernel's BTF, not {Arm64CoreNotes.FpregsetSize}");
        }

        ulong flags = task.Member("thread_info.flags").ToUInt64();
        if (cpu is int c && kernel.Machine.Arm64Cpus[c] is { HasFpSimd: true } vcpu
            && (vcpu.ExceptionLevel == 0 || (flags & (1UL << TifForeignFpstate)) == 0))
        {
            // The task is current on this vCPU and its state is loaded (it is at EL0, or TIF_FOREIGN_FPSTATE is clear).
            return (Arm64CoreNotes.Fpregset(vcpu).Descriptor, $"vCPU {c}");
        }

        byte[] state = saved.ReadBytes();
        if (!SavedAsSve(kernel, thread, flags))
        {
            return (state, "thread.uw.fpsimd_state");
        }

        // SVE layout: the low 128 bits of Zn are Vn.
        bool streaming = kernel.Types.FindMember(thread.TypeId, "svcr") is not null && (thread.Member("svcr").ToUInt64() & 1) != 0;
        long vl = thread.Member("vl").Index(streaming ? 1 : 0).ToInt64();
        if (vl < SveVlMin || vl > SveVlMax || vl % 16 != 0)
        {
            throw new KernelDataException(thread.Address, $"{thread.Expression}.vl", $"vector length {vl} is not a multiple of 16 between {SveVlMin} and {SveVlMax}");
        }

        KernelObject sve = thread.Member("sve_state");
        ulong at = sve.ToUInt64();
        if (at == 0)
        {
            throw new KernelDataException(sve.Address, sve.Expression, "the FP/SIMD state is saved in the SVE layout but sve_state is NULL");
        }

        byte[] z = new byte[16];
        for (int n = 0; n < 32; n++)
        {
            ulong zn = at + (ulong)(n * vl);
            kernel.ReadExactly(zn, z, $"Z{n} of {sve.Expression}");
            z.CopyTo(state, n * 16);
        }

        return (state, $"thread.sve_state (SVE layout, VL {vl} bytes{(streaming ? ", streaming" : string.Empty)})");
    }

    private static bool SavedAsSve(LinuxKernel kernel, KernelObject thread, ulong flags)
    {
        if (kernel.Types.FindMember(thread.TypeId, "fp_type") is null)
        {
            return (flags & (1UL << TifSve)) != 0;
        }

        long sve = kernel.Types.TryGetEnumerator("FP_STATE_SVE", out long v) ? v : 2;
        return thread.Member("fp_type").ToInt64() == sve;
    }
}
