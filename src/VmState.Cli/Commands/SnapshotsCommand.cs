using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using VmState.Formats.Qcow2;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate snapshots IMAGE</c>: list the internal snapshots of a qcow2 image.</summary>
internal static class SnapshotsCommand
{
    public static Command Create()
    {
        var image = new Argument<string>("IMAGE") { Description = "qcow2 image" };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("snapshots", "List the internal snapshots of a qcow2 image");
        command.Arguments.Add(image);
        command.Options.Add(json);
        command.SetAction(r => CommonOptions.Run(() =>
        {
            using Qcow2Image img = Qcow2Image.Open(r.GetValue(image)!);
            if (r.GetValue(json))
            {
                using var w = new Utf8JsonWriter(Console.OpenStandardOutput(), new JsonWriterOptions { Indented = true });
                w.WriteStartArray();
                foreach (Qcow2Snapshot s in img.Snapshots)
                {
                    w.WriteStartObject();
                    w.WriteString("id", s.Id);
                    w.WriteString("name", s.Name);
                    w.WriteString("date", s.Date.ToString("O", CultureInfo.InvariantCulture));
                    w.WriteNumber("vmStateSize", s.VmStateSize);
                    w.WriteNumber("vmClockNanoseconds", s.VmClockNanoseconds);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
            }
            else
            {
                var t = new Table().AddColumns("id", "name", "date (UTC)", "vm state", "vm clock");
                foreach (Qcow2Snapshot s in img.Snapshots)
                {
                    t.AddRow(TerminalText.Markup(s.Id), TerminalText.Markup(s.Name), s.Date.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture), Hex.Size(s.VmStateSize), TimeSpan.FromTicks((long)(s.VmClockNanoseconds / 100)).ToString(@"hh\:mm\:ss\.fff", CultureInfo.InvariantCulture));
                }

                AnsiConsole.Write(t);
            }

            return 0;
        }));
        return command;
    }
}
