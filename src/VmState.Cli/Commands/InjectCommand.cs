using System.CommandLine;
using System.Text.Json;
using VmState.Editing;
using VmState.Formats.Migration;
using VmState.Machine;
using VmState.Snapshots;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate inject ORIGINAL --core core.elf --hardware hardware.json -o NEW</c>: a new snapshot carrying every
/// change made to the extracted core (memory, registers) and hardware file (device fields, registers), and nothing else.
/// </summary>
internal static class InjectCommand
{
    public static Command Create()
    {
        var core = new Option<string?>("--core") { Description = "the edited core.elf from vmstate extract" };
        var hardware = new Option<string?>("--hardware") { Description = "the edited hardware.json from vmstate extract" };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("inject", "Write a new snapshot carrying the changes made to an extracted core.elf and hardware.json");
        var files = new SnapshotOutputOptions(command);
        command.Options.Add(core);
        command.Options.Add(hardware);
        command.Options.Add(json);
        command.SetAction((r, ct) => Task.FromResult(CommonOptions.Run(() =>
        {
            if (r.GetValue(core) is null && r.GetValue(hardware) is null)
            {
                throw new ArgumentException("give --core, --hardware or both");
            }

            string outPath = files.OutputPath(r);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            using Vm vm = files.Open(r);
            MachineState m = vm.Machine;
            SnapshotWriter.Target target = files.Target(r, [.. new[] { r.GetValue(core), r.GetValue(hardware) }.OfType<string>()]);
            SnapshotWriter.Validate(m, target);
            var editor = new SnapshotEditor(m);
            SnapshotInjector.Result result = SnapshotInjector.Apply(editor, m, r.GetValue(core), r.GetValue(hardware), ct);
            string written = SnapshotWriter.Save(editor, m, target, ct);
            SnapshotOutputOptions.Report(r.GetValue(json), outPath, written, "changes", result.Changes, w =>
            {
                w.WriteNumber("pagesChanged", result.PagesChanged);
                w.WriteNumber("registersChanged", result.RegistersChanged);
                w.WriteNumber("fieldsChanged", result.FieldsChanged);
                w.WriteNumber("seconds", Math.Round(clock.Elapsed.TotalSeconds, 3));
            }, $"{written} ({clock.Elapsed.TotalSeconds:F2} s)", whenEmpty: "no differences from the snapshot: the output is an unchanged copy");

            return 0;
        })));
        return command;
    }
}
