using System.Text;
using VmState.Views;

namespace VmState.Cli.Commands;

/// <summary>
/// The one renderer of the list commands (ps, modules, netdev, maps, dmesg, symbols): a library
/// <see cref="ListView{T}"/> as a text table on the terminal (guest text escaped) or as a JSON array.
/// </summary>
internal static class ListOutput
{
    /// <summary>The rows as JSON (<paramref name="json"/>: an indented array on stdout) or as the view's text table.</summary>
    public static void Write<T>(ListView<T> view, IEnumerable<T> rows, bool json)
    {
        if (json)
        {
            CommonOptions.WriteJson(w => ListJson.WriteArray(w, view, rows));
        }
        else
        {
            var text = new StringBuilder();
            AppendText(text, view, rows, header: true);
            Console.Write(text.ToString());
        }
    }

    /// <summary>Appends the header line (when <paramref name="header"/> and the view has one) and a line per row.</summary>
    public static void AppendText<T>(StringBuilder text, ListView<T> view, IEnumerable<T> rows, bool header)
    {
        if (header && view.FormatHeader() is string line)
        {
            text.Append(line).Append('\n');
        }

        foreach (T row in rows)
        {
            text.Append(view.FormatRow(row)).Append('\n');
        }
    }
}
