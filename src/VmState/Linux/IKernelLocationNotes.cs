using VmState.Machine;

namespace VmState.Linux;

/// <summary>
/// How an architecture's kernel location is kept between runs in the machine's notes (the index cache): the note's
/// kind, the note of a located kernel, and the kernel found again from a note, validated as a fresh search validates
/// it (null when the note does not decode or does not validate, and the caller then searches).
/// </summary>
internal interface IKernelLocationNotes
{
    /// <summary>The note kind for <paramref name="options"/>; null when these options keep no note.</summary>
    string? Kind(KernelLocatorOptions options);

    /// <summary>The encoded note of <paramref name="kernel"/>; null when it cannot be kept.</summary>
    byte[]? Encode(LinuxKernel kernel);

    /// <summary>The kernel where the note says it is, validated; null when it is not there.</summary>
    LinuxKernel? FromNote(MachineState machine, ReadOnlySpan<byte> note);

    /// <summary>The notes of <paramref name="machine"/>'s architecture.</summary>
    static IKernelLocationNotes For(MachineState machine) =>
        machine.Architecture == Arch.CpuArchitecture.Arm64 ? Arm64KernelLocationNotes.Instance : X86KernelLocationNotes.Instance;
}

/// <summary>x86-64: <see cref="KernelLocationNote"/> (the page-table root, VMCOREINFO and the strategy that found it).</summary>
internal sealed class X86KernelLocationNotes : IKernelLocationNotes
{
    public static readonly X86KernelLocationNotes Instance = new();

    public string? Kind(KernelLocatorOptions options) => KernelLocationNote.Kind(options);

    public byte[]? Encode(LinuxKernel kernel) => KernelLocationNote.Of(kernel).Encode();

    public LinuxKernel? FromNote(MachineState machine, ReadOnlySpan<byte> note) => KernelLocator.FromNote(machine, note);
}

/// <summary>AArch64: <see cref="Arm64KernelLocationNote"/> (VMCOREINFO, the banner, BTF and <c>modules</c> found in the image).</summary>
internal sealed class Arm64KernelLocationNotes : IKernelLocationNotes
{
    public static readonly Arm64KernelLocationNotes Instance = new();

    /// <summary>The arm64 bootstrap needs VMCOREINFO: without it there is nothing to keep.</summary>
    public string? Kind(KernelLocatorOptions options) => options.UseVmcoreinfo ? Arm64KernelLocationNote.Kind : null;

    public byte[]? Encode(LinuxKernel kernel) => Arm64KernelLocationNote.Of(kernel)?.Encode();

    public LinuxKernel? FromNote(MachineState machine, ReadOnlySpan<byte> note) => Arm64KernelLocator.FromNote(machine, note);
}
