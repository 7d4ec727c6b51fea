using System.CommandLine;
using VmState.Machine;
using VmState.Arch.X86;

namespace VmState.Cli.Commands;

/// <summary>
/// --cpu, --cr3 and --pid: which page tables translate a virtual address (<c>translate</c>, <c>read --va</c>).
/// The address spaces themselves come from the library (<see cref="CpuAddressSpaces"/>, <see cref="Linux.LinuxGuest.ProcessAddressSpace"/>).
/// </summary>
internal sealed class AddressSpaceOptions
{
    private readonly Option<int> _cpu = new("--cpu") { Description = "vCPU whose CR3 and paging mode to use", DefaultValueFactory = _ => 0 };
    private readonly Option<string?> _cr3 = new("--cr3") { Description = "use this page-table root instead of the vCPU's CR3 (same paging mode)" };
    private readonly Option<int?> _pid = new("--pid", "-p")
    {
        Description = "use the page tables of this Linux guest process (its mm->pgd, found with no profile) instead of a vCPU's",
    };

    /// <summary>Adds the options to <paramref name="command"/>.</summary>
    public AddressSpaceOptions(Command command)
    {
        command.Options.Add(_cpu);
        command.Options.Add(_cr3);
        command.Options.Add(_pid);
    }

    /// <summary>--cpu.</summary>
    public Option<int> CpuOption => _cpu;

    /// <summary>The --cr3 given (on AArch64: the table base of the half the address is in), or null.</summary>
    public ulong? Cr3(ParseResult r) => r.GetValue(_cr3) is string cr3 ? AddressParser.Parse(cr3, "--cr3") : null;

    /// <summary>The --pid given, or null.</summary>
    public int? Pid(ParseResult r) => r.GetValue(_pid);

    /// <summary>The address space of --pid when given, else of vCPU --cpu (with --cr3 as its root when given).</summary>
    public AddressSpace Select(ParseResult r, Vm vm)
    {
        int cpu = r.GetValue(_cpu);
        string? cr3 = r.GetValue(_cr3);
        if (r.GetValue(_pid) is int pid)
        {
            if (cr3 is not null)
            {
                throw new ArgumentException("give --pid or --cr3, not both");
            }

            return vm.Linux.ProcessAddressSpace(pid);
        }

        ulong? root = cr3 is null ? null : AddressParser.Parse(cr3, "--cr3");
        try
        {
            return CpuAddressSpaces.Of(vm.Machine, cpu, root);
        }
        catch (VmStateNotFoundException e) when (e.Kind == VmStateObjectKind.Cpu)
        {
            // The library names the vCPU; the CLI names the option that chose it.
            throw new ArgumentException($"--cpu {cpu}: the snapshot has vCPUs 0-{vm.Machine.Cpus.Count - 1}", e);
        }
    }
}
