using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Models.Lora;
using static TorchSharp.torch;

namespace OnnxLora.Models.Peft;

/// <summary>
/// Puts a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) onto a TorchSharp
/// model: wraps the modules the adapter has tensors for, exactly as PEFT would, and loads the trained
/// tensors into them, modules_to_save heads included. The reverse of what the trainer saves.
/// </summary>
/// <remarks>
/// Adapter names meet the model's through <see cref="AdapterNameMapper"/> (as in a merge), so every
/// spelling PEFT writes for the classes modelled here fits: <c>base_model.model.bert.…</c> (BertFor*) and
/// <c>base_model.model.…</c> (BertModel, LlamaForCausalLM's <c>model.…</c>/<c>lm_head</c>), on a model
/// with or without the <c>bert.</c> level. A modules_to_save head is stored in the file as
/// <c>base_model.model.classifier.weight</c> (PEFT's get_peft_model_state_dict drops the
/// <c>modules_to_save.&lt;adapter&gt;</c> level that set_peft_model_state_dict puts back); a head the model
/// lacks is an error saying so.
/// </remarks>
public static class PeftModelAdapter
{
    /// <summary>Wraps the adapted modules of <paramref name="model"/> and loads the adapter's tensors; the model is left in eval mode.</summary>
    /// <exception cref="OnnxLoraException">Bad input: the adapter is malformed or does not fit the model (a module or head the model
    /// does not have, missing/extra keys, wrong shapes), naming them.</exception>
    public static LoraInjectionReport Attach(nn.Module model, string adapterDirectory)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var adapter = PeftAdapter.Load(adapterDirectory);
        var mapper = new AdapterNameMapper($"{model.GetType().Name} model", model.named_parameters().Select(p => p.name));
        var modulePaths = adapter.Modules.ToDictionary(m => m, m => ModuleOf(mapper.Resolve(m.WeightName, $"adapter {adapter.Directory}: module '{m.ModulePath}'")));
        var extras = adapter.ExtraTensors.Select(x => (Extra: x, Parameter: mapper.ResolveExtra(adapter, x))).ToList();
        // Inject on the model's own module paths (a full path as a list entry matches that module only).
        var config = adapter.Config with
        {
            TargetModules = TargetModules.FromList(modulePaths.Values.Distinct(StringComparer.Ordinal)),
            ModulesToSave = extras.Where(x => x.Extra.Kind == AdapterExtraKind.ModulesToSave).Select(x => ModuleOf(x.Parameter)).Distinct(StringComparer.Ordinal).ToList() is { Count: > 0 } saved ? saved : null,
        };
        LoraInjectionReport report;
        try
        {
            report = LoraInjection.Apply(model, config);
        }
        catch (OnnxLoraException e) when (e.Kind == ErrorKind.BadInput)
        {
            throw OnnxLoraException.Invalid(adapter.Directory, $"the adapter does not fit this model: {e.Message}", e);
        }
        using (var scope = NewDisposeScope())
        {
            var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var (module, path) in modulePaths)
            {
                foreach (var (role, info) in module.Tensors)
                {
                    tensors[PeftAdapter.KeyFor(path, module.Kind, role)] = tensor(adapter.Weights.ReadSingles(info), info.Shape.ToArray());
                }
            }
            foreach (var (extra, parameter) in extras)
            {
                tensors[PeftAdapter.KeyPrefix + parameter] = tensor(adapter.ReadSingles(extra), extra.Tensor.Shape.ToArray());
            }
            LoraAdapterState.Load(model, tensors, adapter.Weights.Path);
        }
        model.eval();
        return report;
    }

    private static string ModuleOf(string parameterName) => parameterName[..parameterName.LastIndexOf('.')];
}
