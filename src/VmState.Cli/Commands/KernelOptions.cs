using System.CommandLine;
using VmState.Linux;

namespace VmState.Cli.Commands;

/// <summary>
/// The kernel-location options, in one place for every command that locates the guest kernel (the Linux views,
/// <c>read --sym</c>, <c>read/translate --pid</c>, <c>edit --guest</c>): which sources find it (--no-vmcoreinfo,
/// --no-cpu) and the files that replace its in-memory symbols and types (--system-map, --btf). They become the
/// <see cref="KernelLocatorOptions"/> of the <see cref="Vm"/> the command opens, so <see cref="Vm.Linux"/> honours them.
/// </summary>
internal sealed class KernelOptions
{
    private readonly Option<bool> _noVmcoreinfo = new("--no-vmcoreinfo") { Description = "do not use VMCOREINFO (find the kernel from the vCPUs' CR3 or the banner)" };
    private readonly Option<bool> _noCpu = new("--no-cpu") { Description = "do not use vCPU state (find the kernel from VMCOREINFO or the banner)" };
    private readonly Option<string?> _systemMap = new("--system-map") { Description = "take the kernel symbols from this System.map (moved by the KASLR offset found in memory) instead of the in-memory kallsyms" };
    private readonly Option<string?> _btf = new("--btf") { Description = "take the kernel types from this vmlinux (.BTF section) or raw BTF file instead of the in-memory BTF" };

    /// <summary>Adds the options to <paramref name="command"/>.</summary>
    public KernelOptions(Command command)
    {
        command.Options.Add(_noVmcoreinfo);
        command.Options.Add(_noCpu);
        command.Options.Add(_systemMap);
        command.Options.Add(_btf);
    }

    /// <summary>The kernel-location sources and overrides the options give.</summary>
    public KernelLocatorOptions Get(ParseResult r) => new()
    {
        UseVmcoreinfo = !r.GetValue(_noVmcoreinfo),
        UseCpuState = !r.GetValue(_noCpu),
        SystemMapPath = r.GetValue(_systemMap),
        BtfPath = r.GetValue(_btf),
    };
}
