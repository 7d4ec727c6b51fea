#!/usr/bin/env -S dotnet run
// Watches a kernel variable of a running VM over QMP: reads the 64-bit value at a symbol (default jiffies)
// COUNT times, INTERVAL milliseconds apart, and prints each value that differs from the one before.
// Usage: dotnet run examples/watch-var.cs -- QMP-SOCKET [SYMBOL] [COUNT] [INTERVAL-MS]
#:project ../src/VmState/VmState.csproj
using System.Globalization;
using VmState;
using VmState.Linux;

if (args.Length is < 1 or > 4)
{
    Console.Error.WriteLine("usage: dotnet run examples/watch-var.cs -- QMP-SOCKET [SYMBOL] [COUNT] [INTERVAL-MS]");
    return 2;
}

string symbol = args.Length > 1 ? args[1] : "jiffies";
int count = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 5;
int intervalMs = args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 200;

// The guest keeps running: a single aligned 64-bit read needs no pause to be consistent.
await using Vm vm = await Vm.AttachAsync(args[0]);
LinuxKernel kernel = vm.Linux.Kernel;
ulong address = vm.Linux.Symbol(symbol);
Console.WriteLine($"{symbol} at 0x{address:x}");
ulong? previous = null;
for (int i = 0; i < count; i++)
{
    if (i > 0)
    {
        await Task.Delay(intervalMs);
    }

    ulong value = kernel.ReadU64(address, symbol);
    if (value != previous)
    {
        Console.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {symbol} = {value}");
        previous = value;
    }
}

return 0;
