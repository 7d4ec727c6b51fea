using VmState.Machine;

namespace VmState.Formats.Elf;

/// <summary>The origin of a machine read from an ELF core: its notes, which the injector reads registers from.</summary>
/// <param name="Path">The core file.</param>
/// <param name="Description">"ELF64 core" or "ELF32 core".</param>
/// <param name="Notes">The core's notes (per-vCPU NT_PRSTATUS and "QEMU" notes, VMCOREINFO), in file order.</param>
/// <param name="VmcoreinfoNote">The guest kernel's VMCOREINFO note as carried by the core, or null when it has none.</param>
public sealed record ElfCoreOrigin(string Path, string Description, IReadOnlyList<ElfNote> Notes, byte[]? VmcoreinfoNote)
    : MachineOrigin(MachineOriginKind.ElfCore, Path, Description)
{
    /// <inheritdoc />
    public override byte[]? CarriedVmcoreinfoNote => VmcoreinfoNote;
}
