using System.Text;
using System.Text.Json;
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
            CommonOptions.WriteJson(w => WriteArray(w, view, rows));
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

    /// <summary>Writes the rows as a JSON array of objects, one property per field, in the view's order.</summary>
    public static void WriteArray<T>(Utf8JsonWriter w, ListView<T> view, IEnumerable<T> rows)
    {
        w.WriteStartArray();
        foreach (T row in rows)
        {
            w.WriteStartObject();
            foreach (ListField<T> field in view.Fields)
            {
                object? value = field.ValueOf(row);
                if (value is null && field.OmitWhenNull)
                {
                    continue;
                }

                w.WritePropertyName(field.Name);
                WriteValue(w, field, value);
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    private static void WriteValue<T>(Utf8JsonWriter w, ListField<T> field, object? value)
    {
        switch (value)
        {
            case null:
                w.WriteNullValue();
                break;
            case string s:
                w.WriteStringValue(s);
                break;
            case bool b:
                w.WriteBooleanValue(b);
                break;
            case ulong u when field.Kind == FieldKind.Hex:
                w.WriteStringValue(Hex.Of(u));
                break;
            case int i:
                w.WriteNumberValue(i);
                break;
            case uint u:
                w.WriteNumberValue(u);
                break;
            case long l:
                w.WriteNumberValue(l);
                break;
            case ulong u:
                w.WriteNumberValue(u);
                break;
            default:
                throw new InvalidOperationException($"field '{field.Name}' ({field.Kind}) has a value of type {value.GetType().Name}");
        }
    }
}
