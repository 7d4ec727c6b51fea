using System.CommandLine;
using System.Text;
using Iced.Intel;
using VmState.Arch.Arm64;
using VmState.Arch.X86;
using VmState.Linux;
using VmState.Machine;
using VmState.Snapshots;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate read SOURCE (--pa|--va|--sym) ADDR LEN [--pid N]</c>: hexdump, raw bytes or disassembly of guest memory.</summary>
internal static class ReadCommand
{
    private const ulong MaxLength = 256UL << 20;

    public static Command Create()
    {
        var pa = new Option<bool>("--pa") { Description = "ADDR is guest-physical" };
        var va = new Option<bool>("--va") { Description = "ADDR is virtual, translated with the vCPU's page tables (default)" };
        var sym = new Option<bool>("--sym") { Description = "ADDR is a Linux kernel symbol, optionally +offset (e.g. linux_banner or init_task+0x10), read through the kernel's page tables" };
        var format = new Option<string>("--format", "-f") { Description = "hex (default), raw (bytes to stdout) or asm (x86-64 disassembly)", DefaultValueFactory = _ => "hex" };
        format.AcceptOnlyFromAmong("hex", "raw", "asm");
        var command = new Command("read", "Read guest memory by physical or virtual address");
        // [SNAPSHOT] ADDR LEN: SNAPSHOT is left out with --qmp (an optional argument cannot precede required ones).
        // The kernel options matter with --sym (the symbol's address) and --pid (the process's page tables).
        var input = new KernelInput(command, "ADDR LEN", "the address (0x-hex or decimal) and the length (decimal, 0x-hex, or with k/m suffix)", trailingCount: 2);
        var spaces = new AddressSpaceOptions(command);
        command.Options.Add(pa);
        command.Options.Add(va);
        command.Options.Add(sym);
        command.Options.Add(format);
        command.SetAction(r => KernelInput.Run(() =>
        {
            if ((r.GetValue(pa) ? 1 : 0) + (r.GetValue(va) ? 1 : 0) + (r.GetValue(sym) ? 1 : 0) > 1)
            {
                throw new ArgumentException("give one of --pa, --va and --sym");
            }

            if (spaces.Pid(r) is not null && (r.GetValue(pa) || r.GetValue(sym)))
            {
                throw new ArgumentException("--pid goes with --va (a process's virtual addresses)");
            }

            ulong addr = r.GetValue(sym) ? 0 : AddressParser.Parse(input.Trailing(r, 0), "ADDR");
            ulong len = AddressParser.Parse(input.Trailing(r, 1), "LEN");
            if (len == 0 || len > MaxLength)
            {
                throw new ArgumentException($"LEN {len}: expected 1 to {MaxLength} bytes");
            }

            using Vm vm = input.Open(r);
            MachineState m = vm.Machine;
            byte[] buffer = new byte[len];
            int got;
            if (r.GetValue(sym))
            {
                LinuxKernel kernel = vm.Linux.Kernel;
                addr = SymbolAddress(vm, input.Trailing(r, 0));
                got = kernel.Read(addr, buffer);
                if (got < buffer.Length)
                {
                    Console.Error.WriteLine($"vmstate: kernel address 0x{addr + (ulong)got:x} is not mapped; read {got} of {len} bytes");
                }
            }
            else if (r.GetValue(pa))
            {
                got = m.Memory.Read(addr, buffer);
                if (got < buffer.Length)
                {
                    Console.Error.WriteLine($"vmstate: guest-physical 0x{addr + (ulong)got:x} is not backed by RAM; read {got} of {len} bytes");
                }
            }
            else if (m.Architecture == VmState.Arch.CpuArchitecture.Arm64)
            {
                Arm64AddressSpace space = Arm64Translate.Select(vm, addr, r.GetValue(spaces.CpuOption), spaces.Cr3(r), spaces.Pid(r));
                got = space.Read(addr, buffer);
                if (got < buffer.Length)
                {
                    Arm64Translation t = space.Translate(addr + (ulong)got);
                    Console.Error.WriteLine($"vmstate: 0x{addr + (ulong)got:x} is not readable ({t.Failure ?? "its physical page is not in RAM"}); read {got} of {len} bytes");
                }
            }
            else
            {
                AddressSpace space = spaces.Select(r, vm);
                got = space.Read(addr, buffer);
                if (got < buffer.Length)
                {
                    Translation t = space.Translate(addr + (ulong)got);
                    Console.Error.WriteLine($"vmstate: 0x{addr + (ulong)got:x} is not readable ({t.Failure ?? "its physical page is not in RAM"}); read {got} of {len} bytes");
                }
            }

            ReadOnlySpan<byte> data = buffer.AsSpan(0, got);
            switch (r.GetValue(format))
            {
                case "raw":
                    using (Stream stdout = Console.OpenStandardOutput())
                    {
                        stdout.Write(data);
                    }

                    break;
                case "asm":
                    Disassemble(addr, data.ToArray());
                    break;
                default:
                    HexDump(addr, data);
                    break;
            }

            return got == buffer.Length ? 0 : 3;
        }));
        return command;
    }

    /// <summary>NAME or NAME+OFFSET (0x-hex or decimal) to an address, through the library's symbol expressions.</summary>
    private static ulong SymbolAddress(Vm vm, string spec)
    {
        try
        {
            return vm.Linux.Symbol(spec);
        }
        catch (UnknownSymbolException e)
        {
            // The library names the symbol; the hint names the CLI command that lists them.
            throw new ArgumentException($"kallsyms has no symbol '{e.Name}' (try vmstate symbols SNAPSHOT '{e.Name}*')", e);
        }
    }

    private static void HexDump(ulong address, ReadOnlySpan<byte> data)
    {
        var line = new StringBuilder();
        for (int i = 0; i < data.Length; i += 16)
        {
            Hex.DumpLine(line, address, data, i);
            Console.WriteLine(line.ToString());
        }
    }

    private static void Disassemble(ulong address, byte[] data)
    {
        var decoder = Iced.Intel.Decoder.Create(64, new ByteArrayCodeReader(data), address);
        var formatter = new GasFormatter();
        var output = new StringOutput();
        while (decoder.IP < address + (ulong)data.Length)
        {
            ulong ip = decoder.IP;
            decoder.Decode(out Instruction instruction);
            if (decoder.LastError == DecoderError.NoMoreBytes)
            {
                // The last instruction runs past the bytes read; don't print it as invalid.
                break;
            }

            formatter.Format(instruction, output);
            int start = (int)(ip - address);
            string bytes = Convert.ToHexStringLower(data, start, Math.Min(instruction.Length, data.Length - start));
            Console.WriteLine($"{ip:x16}  {bytes,-24} {output.ToStringAndReset()}");
        }
    }
}
