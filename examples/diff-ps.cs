#!/usr/bin/env -S dotnet run
// Compares the process lists of two snapshots: processes only in the first (-), only in the second (+), and
// processes whose parent or name changed (~). Exits 0 when they are the same, 1 when they differ, as diff does.
// Usage: dotnet run examples/diff-ps.cs -- BEFORE AFTER
#:project ../src/VmState/VmState.csproj
using VmState;
using VmState.Linux;

if (args.Length != 2)
{
    Console.Error.WriteLine("usage: dotnet run examples/diff-ps.cs -- BEFORE AFTER");
    return 2;
}

Dictionary<int, LinuxProcess> before = ByPid(args[0]);
Dictionary<int, LinuxProcess> after = ByPid(args[1]);
int differences = 0;
foreach (int pid in before.Keys.Union(after.Keys).Order())
{
    bool inBefore = before.TryGetValue(pid, out LinuxProcess? b);
    bool inAfter = after.TryGetValue(pid, out LinuxProcess? a);
    if (inBefore && !inAfter)
    {
        Console.WriteLine($"- {b!.Pid,6} {b.Ppid,6} {b.Comm}");
    }
    else if (!inBefore && inAfter)
    {
        Console.WriteLine($"+ {a!.Pid,6} {a.Ppid,6} {a.Comm}");
    }
    else if (b!.Ppid != a!.Ppid || b.Comm != a.Comm)
    {
        Console.WriteLine($"~ {pid,6} {b.Ppid,6} {b.Comm} -> {a.Ppid,6} {a.Comm}");
    }
    else
    {
        continue;
    }

    differences++;
}

Console.WriteLine(differences == 0
    ? $"no difference ({before.Count} processes)"
    : $"{differences} difference(s) ({before.Count} processes before, {after.Count} after)");
return differences == 0 ? 0 : 1;

// Keyed by pid: a pid identifies a process within one moment; a reused pid with a new name shows as "~".
static Dictionary<int, LinuxProcess> ByPid(string path)
{
    using Vm vm = Vm.Open(path);
    return vm.Linux.Processes().ToDictionary(p => p.Pid);
}
