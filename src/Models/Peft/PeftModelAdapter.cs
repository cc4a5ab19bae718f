using OnnxLora.Core;
using OnnxLora.Core.Peft;
using OnnxLora.Core.Safetensors;
using OnnxLora.Models.Internals;
using OnnxLora.Models.Lora;
using OnnxLora.Models.Onnx;
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
        return Attach(model, adapter, weights: null);
    }

    /// <summary>
    /// As <see cref="Attach(nn.Module, string)"/> for a model built without weights (<see cref="PretrainedModel.LoadWithoutWeights"/>):
    /// the LoRA layers are made on the meta device, the adapter is checked against them exactly as when its tensors are loaded, and
    /// each tensor is recorded in the model's <see cref="PretrainedWithoutWeights.Weights"/> instead — LoRA factors under their PEFT
    /// keys, modules_to_save copies in place of the model's parameters — so an export streams them from the adapter file.
    /// <paramref name="adapter"/> must stay open until the model is written.
    /// </summary>
    /// <inheritdoc cref="Attach(nn.Module, string)" path="/exception"/>
    public static LoraInjectionReport AttachWithoutWeights(PretrainedWithoutWeights model, PeftAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(adapter);
        return Attach(model.Module, adapter, model.Weights);
    }

    /// <summary>Injects and loads (or, with <paramref name="weights"/>, records) the adapter's tensors.</summary>
    private static LoraInjectionReport Attach(nn.Module model, PeftAdapter adapter, OnnxWeightStore? weights)
    {
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
            using var meta = weights is null ? null : LayerFactory.WithoutWeights();
            report = LoraInjection.Apply(model, config);
        }
        catch (OnnxLoraException e) when (e.Kind == ErrorKind.BadInput)
        {
            throw OnnxLoraException.Invalid(adapter.Directory, $"the adapter does not fit this model: {e.Message}", e);
        }
        using (var scope = NewDisposeScope())
        {
            // Without weights the tensors are placeholders of the stored shapes, on the device of the parameter they load into (meta, or
            // the CPU for the small parts built with data: a classifier head, LoRA embedding factors): checked by LoraAdapterState.Load
            // like loaded ones; the export takes the data from the store.
            var devices = weights is null ? null : LoraAdapterState.Entries(model).ToDictionary(e => e.Key, e => e.Parameter.device, StringComparer.Ordinal);
            Tensor Values(string key, TensorInfo info, Func<float[]> read) => devices is null
                ? tensor(read(), info.Shape.ToArray())
                : zeros(info.Shape.ToArray(), ScalarType.Float32, devices.GetValueOrDefault(key) ?? new Device(TorchSharp.DeviceType.META));
            var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            var recorded = new List<(string Name, TensorInfo Tensor, bool Replaces)>();
            foreach (var (module, path) in modulePaths)
            {
                foreach (var (role, info) in module.Tensors)
                {
                    string key = PeftAdapter.KeyFor(path, module.Kind, role);
                    tensors[key] = Values(key, info, () => adapter.Weights.ReadSingles(info));
                    recorded.Add((key, info, false));
                }
            }
            foreach (var (extra, parameter) in extras)
            {
                string key = PeftAdapter.KeyPrefix + parameter;
                tensors[key] = Values(key, extra.Tensor, () => adapter.ReadSingles(extra));
                recorded.Add((parameter, extra.Tensor, true));
            }
            LoraAdapterState.Load(model, tensors, adapter.Weights.Path);
            foreach (var (name, info, replaces) in weights is null ? [] : recorded)
            {
                if (replaces)
                {
                    weights!.Replace(name, adapter.Weights, info);
                }
                else
                {
                    weights!.Add(name, adapter.Weights, info);
                }
            }
        }
        model.eval();
        return report;
    }

    private static string ModuleOf(string parameterName) => parameterName[..parameterName.LastIndexOf('.')];
}
