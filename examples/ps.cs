#!/usr/bin/env -S dotnet run
// Lists the processes of a snapshot (a migration stream, virsh save file, qcow2 image or ELF core), as ps does.
// Usage: dotnet run examples/ps.cs -- SNAPSHOT
#:project ../src/VmState/VmState.csproj
using VmState;
using VmState.Linux;

if (args.Length != 1)
{
    Console.Error.WriteLine("usage: dotnet run examples/ps.cs -- SNAPSHOT");
    return 2;
}

using Vm vm = Vm.Open(args[0]);
Console.WriteLine($"{"PID",6} {"PPID",6} COMM");
foreach (LinuxProcess p in vm.Linux.Processes())
{
    Console.WriteLine($"{p.Pid,6} {p.Ppid,6} {p.Comm}");
}

return 0;
