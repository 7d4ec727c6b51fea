#!/usr/bin/env -S dotnet run
// Finds the processes that map a guest-physical page: for each user process, walks its memory mappings
// (/proc/PID/maps) and, inside each, its page tables (mm->pgd), and prints every virtual address that
// translates to the page. Exits 1 when no process maps it.
// Usage: dotnet run examples/who-maps.cs -- SNAPSHOT PHYSICAL-ADDRESS     (hex, e.g. 0x1234000)
#:project ../src/VmState/VmState.csproj
using System.Globalization;
using VmState;
using VmState.Arch.X86;
using VmState.Linux;

if (args.Length != 2)
{
    Console.Error.WriteLine("usage: dotnet run examples/who-maps.cs -- SNAPSHOT PHYSICAL-ADDRESS");
    return 2;
}

ulong physical = ulong.Parse(args[1].StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? args[1][2..] : args[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
const ulong PageSize = 4096;
ulong page = physical & ~(PageSize - 1);

using Vm vm = Vm.Open(args[0]);
LinuxKernel kernel = vm.Linux.Kernel;
int hits = 0;
foreach (LinuxProcess p in vm.Linux.Processes())
{
    // Threads share their leader's mm, and kernel threads have none: one walk per thread group.
    if (p.IsKernelThread || p.Pid != p.Tgid)
    {
        continue;
    }

    // A process caught while exiting has already given up its memory (mm is NULL): nothing of it maps the page.
    KernelObject task = MemoryMaps.FindTask(kernel, p.Pid);
    if (task.Member("mm").IsNull)
    {
        continue;
    }

    KernelObject mm = MemoryMaps.UserMm(task);
    AddressSpace space = kernel.ProcessAddressSpace(mm.Member("pgd").ToUInt64());
    foreach (LinuxVma vma in vm.Linux.Maps(p.Pid))
    {
        // Only the present pages of the VMA are visited; a large page counts when the target falls inside it.
        foreach (VirtualMapping m in space.Mappings(vma.Start, vma.End))
        {
            if (page >= m.PhysicalAddress && page < m.PhysicalAddress + m.Size)
            {
                ulong virtualAddress = m.VirtualAddress + (physical - m.PhysicalAddress);
                string name = vma.Name.Length == 0 ? "[anon]" : vma.Name;
                Console.WriteLine($"{p.Pid,6} {p.Comm,-16} 0x{virtualAddress:x} {name}");
                hits++;
            }
        }
    }
}

if (hits == 0)
{
    Console.WriteLine($"no process maps physical page 0x{page:x}");
    return 1;
}

return 0;
