using System.Buffers.Binary;
using System.CommandLine;
using System.Text.Json;
using VmState.Editing;
using VmState.Formats.Migration;
using VmState.Formats.Migration.Devices;
using VmState.Linux;
using VmState.Machine;
using VmState.Snapshots;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate edit ORIGINAL -o NEW [edits]</c>: memory pokes, register and device-field sets, NIC MACs; writes a new
/// migration stream that QEMU resumes with <c>-incoming "exec:cat NEW"</c>. All edits are checked before anything
/// is written.
/// </summary>
internal static class EditCommand
{
    public static Command Create()
    {
        var writePa = new Option<string[]>("--write-pa") { Description = "ADDR=HEXBYTES: write bytes at a guest-physical address", AllowMultipleArgumentsPerToken = false };
        var writeVa = new Option<string[]>("--write-va") { Description = "ADDR=HEXBYTES: write bytes at a virtual address (page tables of --cpu)" };
        var u64Pa = new Option<string[]>("--set-u64-pa") { Description = "ADDR=VALUE: write a little-endian 64-bit value at a guest-physical address" };
        var u64Va = new Option<string[]>("--set-u64-va") { Description = "ADDR=VALUE: write a little-endian 64-bit value at a virtual address" };
        var cpu = new Option<int>("--cpu") { Description = "vCPU whose page tables translate --write-va/--set-u64-va", DefaultValueFactory = _ => 0 };
        var cr3 = new Option<string?>("--cr3") { Description = "page-table root for virtual writes (e.g. a process's), instead of the vCPU's CR3" };
        var setReg = new Option<string[]>("--set-reg") { Description = "[CPU:]REG=VALUE, e.g. 0:rax=0x1234 (default vCPU 0); arm64 v0-v31 take 128-bit values" };
        var setField = new Option<string[]>("--set-field") { Description = "DEVICE:PATH=VALUE, e.g. e1000:mac_reg[RCTL]=0x8002 (paths as in hardware.json)" };
        var setMac = new Option<string[]>("--set-mac") { Description = "NIC=MAC, e.g. virtio-net=52:54:00:aa:bb:cc or e1000=52:54:00:11:22:33" };
        var guest = new Option<bool>("--guest") { Description = "with --set-mac: also change the guest Linux kernel's copy (net_device dev_addr and perm_addr)" };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("edit", "Write a new snapshot with memory, register, device-field or MAC changes");
        var files = new SnapshotOutputOptions(command);
        foreach (Option o in new Option[] { writePa, writeVa, u64Pa, u64Va, cpu, cr3, setReg, setField, setMac, guest, json })
        {
            command.Options.Add(o);
        }

        // With --guest the kernel is located, as every other command locates it.
        var kernel = new KernelOptions(command);

        command.SetAction((r, ct) => Task.FromResult(CommonOptions.Run(() =>
        {
            string outPath = files.OutputPath(r);
            using Vm vm = files.Open(r, kernel.Get(r));
            MachineState m = vm.Machine;
            SnapshotWriter.Target target = files.Target(r);
            SnapshotWriter.Validate(m, target);
            var editor = new SnapshotEditor(m);
            int vcpu = r.GetValue(cpu);
            ulong? root = r.GetValue(cr3) is string c ? AddressParser.Parse(c, "--cr3") : null;
            foreach (string e in r.GetValue(writePa) ?? [])
            {
                (string a, string v) = Split(e, '=', "--write-pa");
                editor.WritePhysical(AddressParser.Parse(a, "--write-pa address"), SnapshotEditor.ParseHex(v, "--write-pa"));
            }

            foreach (string e in r.GetValue(writeVa) ?? [])
            {
                (string a, string v) = Split(e, '=', "--write-va");
                editor.WriteVirtual(AddressParser.Parse(a, "--write-va address"), SnapshotEditor.ParseHex(v, "--write-va"), vcpu, root);
            }

            foreach (string e in r.GetValue(u64Pa) ?? [])
            {
                (string a, string v) = Split(e, '=', "--set-u64-pa");
                editor.WritePhysical(AddressParser.Parse(a, "--set-u64-pa address"), U64(v));
            }

            foreach (string e in r.GetValue(u64Va) ?? [])
            {
                (string a, string v) = Split(e, '=', "--set-u64-va");
                editor.WriteVirtual(AddressParser.Parse(a, "--set-u64-va address"), U64(v), vcpu, root);
            }

            foreach (string e in r.GetValue(setReg) ?? [])
            {
                (string lhs, string v) = Split(e, '=', "--set-reg");
                (int which, string reg) = ParseRegisterTarget(lhs, e, m.Vcpus.Count);
                editor.SetRegister(which, reg, SnapshotEditor.ParseRegisterValue(v, "--set-reg"));
            }

            foreach (string e in r.GetValue(setField) ?? [])
            {
                (string lhs, string v) = Split(e, '=', "--set-field");
                int colon = lhs.LastIndexOf(':', lhs.IndexOf('[', StringComparison.Ordinal) is int b and >= 0 ? b : lhs.Length - 1);
                if (colon <= 0)
                {
                    throw new ArgumentException($"--set-field \"{e}\": expected DEVICE:PATH=VALUE");
                }

                editor.SetDeviceField(lhs[..colon], lhs[(colon + 1)..], v);
            }

            foreach (string e in r.GetValue(setMac) ?? [])
            {
                (string nic, string mac) = Split(e, '=', "--set-mac");
                byte[] newMac = MacAddress.Parse(mac);
                if (r.GetValue(guest))
                {
                    GuestMacEdit.SetMac(editor, vm.Linux, nic, newMac);
                }
                else
                {
                    editor.SetMac(nic, newMac);
                }
            }

            if (editor.Log.Count == 0)
            {
                Console.Error.WriteLine("vmstate: no edits given; writing an unchanged copy");
            }

            string written = SnapshotWriter.Save(editor, m, target, ct);
            SnapshotOutputOptions.Report(r.GetValue(json), outPath, written, "edits", editor.Log, w =>
            {
                w.WriteNumber("pagesChanged", editor.Stream.EditedPages);
                w.WriteNumber("fieldsChanged", editor.Stream.EditedFields);
            }, $"{written} ({editor.Stream.EditedPages} pages, {editor.Stream.EditedFields} device fields changed)");

            return 0;
        })));
        return command;
    }

    /// <summary>
    /// Splits the left side of <c>--set-reg [CPU:]REG=VALUE</c>. The vCPU index must be a decimal below
    /// <paramref name="cpuCount"/> (int.Parse used to throw OverflowException for 99999999999).
    /// </summary>
    internal static (int Cpu, string Register) ParseRegisterTarget(string lhs, string option, int cpuCount)
    {
        int colon = lhs.IndexOf(':', StringComparison.Ordinal);
        if (colon < 0)
        {
            return (0, lhs);
        }

        string index = lhs[..colon];
        if (!int.TryParse(index, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int cpu) || cpu >= cpuCount)
        {
            string range = cpuCount > 0 ? $"its vCPUs are 0 to {cpuCount - 1}" : "it has no vCPUs";
            throw new ArgumentException($"--set-reg \"{option}\": no vCPU {index} in this snapshot ({range})");
        }

        return (cpu, lhs[(colon + 1)..]);
    }

    internal static (string, string) Split(string text, char separator, string what)
    {
        int i = text.IndexOf(separator, StringComparison.Ordinal);
        if (i <= 0 || i == text.Length - 1)
        {
            throw new ArgumentException($"{what} \"{text}\": expected LEFT{separator}RIGHT");
        }

        return (text[..i], text[(i + 1)..]);
    }

    private static byte[] U64(string value)
    {
        byte[] b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, SnapshotEditor.ParseInteger(value, "value").Value);
        return b;
    }
}
